import { ScreeningPage } from "../features/screening/components/ScreeningPage";

export function App() {
  return <ScreeningPage />;
}

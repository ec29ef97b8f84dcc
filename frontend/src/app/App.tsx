import { useEffect, useState } from "react";
import { ScreeningPage } from "../features/screening/components/ScreeningPage";
import { SlidePage } from "../features/slides/components/SlidePage";

type Mode = "image" | "slide";
const modeOf = (hash: string): Mode => (hash.startsWith("#/slides") ? "slide" : "image");

/** Two modes, chosen by the URL's hash so each can be linked to: #/ (one image), #/slides. */
export function App() {
  const [mode, setMode] = useState<Mode>(() => modeOf(window.location.hash));
  useEffect(() => {
    const follow = () => setMode(modeOf(window.location.hash));
    window.addEventListener("hashchange", follow);
    return () => window.removeEventListener("hashchange", follow);
  }, []);

  const nav = (
    <nav className="modes" aria-label="Mode">
      <a href="#/" aria-current={mode === "image" ? "page" : undefined}>
        Single image
      </a>
      <a href="#/slides" aria-current={mode === "slide" ? "page" : undefined}>
        Whole slide
      </a>
    </nav>
  );
  return mode === "slide" ? <SlidePage nav={nav} /> : <ScreeningPage nav={nav} />;
}

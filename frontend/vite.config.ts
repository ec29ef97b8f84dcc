import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

// The service that `npm run dev` talks to (scripts/serve.sh or `make run` listen on :8080).
const service = process.env.HEALER_API ?? "http://127.0.0.1:8080";

export default defineConfig({
  plugins: [react()],
  // FastAPI serves frontend/dist at /app/ (main.py); `GET /` stays the health check.
  base: "/app/",
  server: {
    proxy: {
      "^/$": service, // the health check: exactly "/", so the dev page at /app/ is not proxied
      "/predict": service,
      "/slides": service,
    },
  },
  test: {
    environment: "jsdom",
    globals: true,
    setupFiles: ["./src/testing/setup.ts"],
    include: ["src/**/*.test.{ts,tsx}"],
  },
});

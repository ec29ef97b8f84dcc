// The page's only configuration, read and validated here and nowhere else.
//
// VITE_API_URL: where the service lives. Empty (the default) means the page's own origin,
// which is right both when FastAPI serves the built page at /app/ and under `npm run dev`,
// whose proxy forwards the API paths to the service.

function apiUrl(raw: string | undefined): string {
  const value = (raw ?? "").trim().replace(/\/+$/, "");
  if (value && !/^https?:\/\//.test(value)) {
    throw new Error(`VITE_API_URL must start with http:// or https:// (got "${value}")`);
  }
  return value;
}

export const env = {
  apiUrl: apiUrl(import.meta.env.VITE_API_URL),
} as const;

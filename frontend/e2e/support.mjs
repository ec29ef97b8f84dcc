// What both real-browser tests need: where things are, a free port, and the service's health.
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const python = process.env.HEALER_PYTHON ?? join(repo, ".venv", "bin", "python");
export const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const artifacts = join(repo, "test-artifacts");

export function freePort() {
  return new Promise((ok, fail) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => ok(port));
    });
    probe.on("error", fail);
  });
}

/** GET `url` until it answers 200 (its JSON) while `server` runs; `log()` explains a failure. */
export async function waitForHealth(url, timeoutMs, server, log) {
  const deadline = Date.now() + timeoutMs;
  let last = "no attempt";
  while (Date.now() < deadline) {
    if (server.exitCode !== null) throw new Error(`the service exited (${server.exitCode}):\n${log()}`);
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(5000) });
      if (response.status === 200) return response.json();
      last = `HTTP ${response.status}`;
    } catch (error) {
      last = String(error?.cause ?? error); // not listening yet, or an attempt that hung
    }
    await new Promise((ok) => setTimeout(ok, 500));
  }
  throw new Error(`no 200 from ${url} within ${timeoutMs / 1000} s (last: ${last}):\n${log()}`);
}

// The service's health check (GET /), which both modes show in the page header.
import { useEffect, useState } from "react";
import { ApiError, request, type Health } from "./client";
import { describeError, type Problem } from "./errors";

export function getHealth(signal?: AbortSignal): Promise<Health> {
  return request<Health>("/", { method: "GET", signal });
}

/** The health check, asked once: what the service runs, or why it cannot be reached. */
export function useServiceHealth(): { health: Health | null; problem: Problem | null } {
  const [health, setHealth] = useState<Health | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  useEffect(() => {
    const abort = new AbortController();
    getHealth(abort.signal).then(setHealth, (error: unknown) => {
      if (!(error instanceof ApiError && error.kind === "aborted")) setProblem(describeError(error));
    });
    return () => abort.abort();
  }, []);
  return { health, problem };
}

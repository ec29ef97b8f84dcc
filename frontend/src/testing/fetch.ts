// A fake of the network under the API client (src/api/client.ts): tests script what the
// service answers per path, and see what the page sent.
import { vi } from "vitest";
import type { Health, Prediction } from "../api/client";

export const MODEL = { id: "google/medgemma-4b-it", revision: null, device: "cpu", quantization: "int8", demo: false, engine: "transformers" } as const;

export function health(demo = false): Health {
  return {
    status: "ok",
    model: { ...MODEL, demo },
    slides: { upload: "form", max_slide_mb: 2048 }, // a local SLIDE_STORE; the bucket tests say "bucket"
    disclaimer: "Screening aid only, not a diagnosis (from the service).",
  };
}

export function prediction(overrides: Partial<Prediction> = {}): Prediction {
  return {
    answer: "yes",
    probability: 0.87,
    answer_mass: 0.96,
    unseen_mass: 0,
    min_answer_mass: 0.5,
    explanation: "Irregular glands with nuclear atypia.",
    prediction: "Yes. Irregular glands with nuclear atypia.",
    question: "Is colorectal cancer present?",
    threshold: 0.5,
    model: { ...MODEL },
    timings_ms: { decode_image: 4, preprocess: 12, model: 21300, total: 21350 },
    cached: false,
    disclaimer: "Screening aid only, not a diagnosis (from the service).",
    ...overrides,
  };
}

export function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", "X-Request-ID": "req-123", ...headers },
  });
}

export function errorBody(status: number, error: string, detail: string, headers: Record<string, string> = {}) {
  return json(status, { error, detail, request_id: "req-123" }, headers);
}

type Answer = Response | Error | DOMException | ((init: RequestInit) => Promise<Response>);

/** Stubs global fetch: GET / answers `healthAnswer`; each POST /predict takes the next of `answers`. */
export function mockService(answers: Answer[], healthAnswer: Answer = json(200, health())) {
  const queue = [...answers];
  const fetchMock = vi.fn(async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const url = String(input);
    const answer = url.endsWith("/predict") ? queue.shift() : healthAnswer instanceof Response ? healthAnswer.clone() : healthAnswer;
    if (answer === undefined) throw new Error(`unexpected request ${url}`);
    if (answer instanceof Response) return answer;
    if (typeof answer === "function") return answer(init);
    throw answer; // an Error, or jsdom's DOMException (which is not an Error subclass)
  });
  vi.stubGlobal("fetch", fetchMock);
  return fetchMock;
}

/** A /predict that never answers until it is aborted, like a slow CPU. */
export function hanging(init: RequestInit): Promise<Response> {
  return new Promise((_, reject) => {
    init.signal?.addEventListener("abort", () => reject(new DOMException("The operation was aborted.", "AbortError")));
  });
}

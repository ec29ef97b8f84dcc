// A fake of the network under the API client (src/api/client.ts): tests script what the
// service answers per path, and see what the page sent.
import { vi } from "vitest";
import type { Health, Prediction, StreamedAnswer } from "../api/client";

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

/** The `answer` event the service sends before `done` for this Prediction (the same values). */
export function answerOf(p: Prediction): StreamedAnswer {
  const { answer, probability, answer_mass, min_answer_mass, unseen_mass, threshold, triage, question, disclaimer } = p;
  return { answer, probability, answer_mass, min_answer_mass, unseen_mass, threshold, triage: triage ?? null, question, disclaimer };
}

/** One server-sent event as sse-starlette writes it. */
export function sseEvent(name: string, body: unknown): string {
  return `event: ${name}\r\ndata: ${JSON.stringify(body)}\r\n\r\n`;
}

/** A streamed /predict, all at once: `answer`, the raw text in `tokens`, then `done` with `p`. */
export function streamed(p: Prediction = prediction(), tokens: string[] = p.prediction.split(/(?<= )/)): Response {
  const events = [sseEvent("answer", answerOf(p)), ...tokens.map((text) => sseEvent("token", { text })), sseEvent("done", p)];
  return sseResponse(events);
}

/** A 200 text/event-stream whose body is `chunks`, each read on its own (an event may span two). */
export function sseResponse(chunks: string[]): Response {
  const bytes = chunks.map((chunk) => new TextEncoder().encode(chunk));
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      const next = bytes.shift();
      if (next) controller.enqueue(next);
      else controller.close();
    },
  });
  return new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream; charset=utf-8", "X-Request-ID": "req-123" } });
}

/** A streamed /predict the test writes event by event (`send`), as a slow model would; it errors
 *  as fetch's body does when the request's signal aborts. */
export function liveStream() {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let signal: AbortSignal | null = null;
  const body = new ReadableStream<Uint8Array>({ start: (c) => void (controller = c) });
  return {
    answer: async (init: RequestInit): Promise<Response> => {
      signal = init.signal ?? null;
      signal?.addEventListener("abort", () => controller.error(new DOMException("The operation was aborted.", "AbortError")));
      return new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream; charset=utf-8", "X-Request-ID": "req-123" } });
    },
    send: (name: string, data: unknown) => controller.enqueue(new TextEncoder().encode(sseEvent(name, data))),
    end: () => controller.close(),
    aborted: () => signal?.aborted ?? false,
  };
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

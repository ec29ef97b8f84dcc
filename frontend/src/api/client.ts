// The one place the page talks HTTP to the service (the slide bytes that go straight to a bucket
// are features/slides/api/resumableUpload.ts's). Every failure leaves as an `ApiError`, so
// components never see a raw Response, a TypeError from fetch or an AbortError:
//
//   ApiError
//   ├── kind "http"          the service answered with an error status (its JSON body parsed)
//   ├── kind "network"       no answer at all: offline, DNS, refused, CORS
//   ├── kind "aborted"       the caller cancelled (AbortController)
//   └── kind "bad_response"  an answer that is not the JSON (or the events) the contract promises
import { createParser, type EventSourceMessage } from "eventsource-parser";
import { env } from "../config/env";
import type { components, paths } from "./schema";

export type ErrorBody = components["schemas"]["ErrorBody"];
export type ModelCard = components["schemas"]["ModelCard"];
export type Health = paths["/"]["get"]["responses"][200]["content"]["application/json"];
export type Prediction = paths["/predict"]["post"]["responses"][200]["content"]["application/json"];
export type StreamedAnswer = components["schemas"]["StreamedAnswer"];
export type StreamedText = components["schemas"]["StreamedText"];
export type PredictForm = paths["/predict"]["post"]["requestBody"]["content"]["multipart/form-data"];
export type SlideJob = paths["/slides/{job_id}"]["get"]["responses"][200]["content"]["application/json"];
export type SlideTiles = paths["/slides/{job_id}/tiles"]["get"]["responses"][200]["content"]["application/json"];
export type SlideForm = paths["/slides"]["post"]["requestBody"]["content"]["multipart/form-data"];
export type StartSlide = paths["/slides"]["post"]["requestBody"]["content"]["application/json"];
export type SlideUploadRequest = paths["/slides/uploads"]["post"]["requestBody"]["content"]["application/json"];
export type SlideUpload = paths["/slides/uploads"]["post"]["responses"][201]["content"]["application/json"];

export type ApiErrorKind = "http" | "network" | "aborted" | "bad_response";

export class ApiError extends Error {
  readonly kind: ApiErrorKind;
  readonly status: number | null;
  /** The service's stable reason code, e.g. "upload_too_large". */
  readonly code: string | null;
  /** The service's sentence for people. */
  readonly detail: string | null;
  readonly requestId: string | null;
  /** Seconds from the Retry-After header, when the service sent one. */
  readonly retryAfterS: number | null;

  constructor(init: {
    kind: ApiErrorKind;
    status?: number | null;
    code?: string | null;
    detail?: string | null;
    requestId?: string | null;
    retryAfterS?: number | null;
  }) {
    super(init.detail ?? `${init.kind}${init.status ? ` ${init.status}` : ""}`);
    this.name = "ApiError";
    this.kind = init.kind;
    this.status = init.status ?? null;
    this.code = init.code ?? null;
    this.detail = init.detail ?? null;
    this.requestId = init.requestId ?? null;
    this.retryAfterS = init.retryAfterS ?? null;
  }
}

/** Retry-After is either delta-seconds or an HTTP date; null when absent or unreadable. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | null {
  if (value === null || value.trim() === "") return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return null;
  return Math.max(0, Math.ceil((date - now) / 1000));
}

function isErrorBody(body: unknown): body is ErrorBody {
  return (
    typeof body === "object" &&
    body !== null &&
    typeof (body as ErrorBody).error === "string" &&
    typeof (body as ErrorBody).detail === "string"
  );
}

/** A call to the service; `init.headers` go along (a JSON body needs its Content-Type), with Accept. */
export async function request<T>(path: string, init: RequestInit = {}): Promise<T> {
  const response = await send(path, init, "application/json");
  const body = await jsonOf(response, init.signal);
  if (response.ok) {
    if (body === null || typeof body !== "object") {
      throw new ApiError({ kind: "bad_response", status: response.status, requestId: response.headers.get("X-Request-ID") });
    }
    return body as T;
  }
  throw httpError(response.status, body, (name) => response.headers.get(name));
}

/** The service's server-sent events, handed to `onEvent` one by one as they arrive; resolves when
 *  the stream ends. A POST (EventSource can only GET), so fetch's body is read with
 *  eventsource-parser. A refusal before the stream opens (503 busy, 400/413/415) is the usual JSON
 *  error, thrown as `request` throws it; `onEvent` throwing ends the stream and rethrows; the
 *  signal aborting mid-stream closes the connection and throws kind "aborted". */
export async function stream(path: string, init: RequestInit, onEvent: (event: EventSourceMessage) => void): Promise<void> {
  const signal = init.signal ?? undefined;
  const response = await send(path, init, "text/event-stream");
  const requestId = response.headers.get("X-Request-ID");
  if (!response.ok) throw httpError(response.status, await jsonOf(response, signal), (name) => response.headers.get(name));
  if (!response.body || !(response.headers.get("Content-Type") ?? "").startsWith("text/event-stream")) {
    throw new ApiError({ kind: "bad_response", status: response.status, requestId });
  }
  let arrived: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (event) => arrived.push(event) });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  try {
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch {
        throw new ApiError({ kind: signal?.aborted ? "aborted" : "network", requestId });
      }
      if (chunk.done) return;
      parser.feed(decoder.decode(chunk.value, { stream: true }));
      const events = arrived;
      arrived = [];
      events.forEach(onEvent);
    }
  } finally {
    reader.cancel().catch(() => {}); // done, failed or abandoned: the connection is let go
  }
}

async function send(path: string, init: RequestInit, accept: string): Promise<Response> {
  try {
    const headers = new Headers(init.headers);
    headers.set("Accept", accept);
    return await fetch(env.apiUrl + path, { ...init, headers });
  } catch {
    throw new ApiError({ kind: init.signal?.aborted ? "aborted" : "network" });
  }
}

/** The body as JSON, or null when it is not JSON (a proxy's HTML page). */
async function jsonOf(response: Response, signal?: AbortSignal | null): Promise<unknown> {
  try {
    return await response.json();
  } catch {
    if (signal?.aborted) throw new ApiError({ kind: "aborted" });
    return null;
  }
}

// The status the unstreamed call would have answered with each reason code a stream can end with
// (healer/errors.py), so an `error` event is worded like the same failure as JSON; others are 500.
const STATUS_OF_CODE: Record<string, number> = {
  timeout: 504,
  engine_timeout: 504,
  engine_unavailable: 503,
  model_not_ready: 503,
  busy: 503,
};

/** An `error` event's body (an ErrorBody, sent once the stream was open and the status was 200). */
export function streamedError(body: unknown): ApiError {
  if (!isErrorBody(body)) return new ApiError({ kind: "bad_response", status: 200 });
  return new ApiError({
    kind: "http",
    status: STATUS_OF_CODE[body.error] ?? 500,
    code: body.error,
    detail: body.detail,
    requestId: body.request_id,
  });
}

function httpError(status: number, body: unknown, header: (name: string) => string | null): ApiError {
  const error = isErrorBody(body) ? body : null;
  return new ApiError({
    kind: "http",
    status,
    code: error?.error ?? null,
    detail: error?.detail ?? null,
    requestId: error?.request_id ?? header("X-Request-ID"),
    retryAfterS: parseRetryAfter(header("Retry-After")),
  });
}

/** POSTs a form with upload progress (fetch has none): XMLHttpRequest, the same errors as `request`.
 *  `onProgress` gets the fraction of the body sent, 0 to 1. */
export function upload<T>(
  path: string,
  form: FormData,
  { onProgress, signal }: { onProgress?: (fraction: number) => void; signal?: AbortSignal } = {},
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal?.aborted) return reject(new ApiError({ kind: "aborted" }));
    const xhr = new XMLHttpRequest();
    xhr.open("POST", env.apiUrl + path);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable && event.total > 0) onProgress?.(event.loaded / event.total);
    };
    const abort = () => xhr.abort();
    signal?.addEventListener("abort", abort);
    const settle = (outcome: () => void) => {
      signal?.removeEventListener("abort", abort);
      outcome();
    };
    xhr.onabort = () => settle(() => reject(new ApiError({ kind: "aborted" })));
    xhr.onerror = () => settle(() => reject(new ApiError({ kind: "network" })));
    xhr.onload = () =>
      settle(() => {
        let body: unknown = null;
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
          body = null;
        }
        const header = (name: string) => xhr.getResponseHeader(name);
        if (xhr.status >= 200 && xhr.status < 300) {
          if (body === null || typeof body !== "object") {
            reject(new ApiError({ kind: "bad_response", status: xhr.status, requestId: header("X-Request-ID") }));
          } else {
            onProgress?.(1);
            resolve(body as T);
          }
        } else {
          reject(httpError(xhr.status, body, header));
        }
      });
    xhr.send(form);
  });
}

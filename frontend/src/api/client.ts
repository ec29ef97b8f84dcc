// The one place the page talks HTTP. Every failure leaves as an `ApiError`, so components
// never see a raw Response, a TypeError from fetch or an AbortError:
//
//   ApiError
//   ├── kind "http"          the service answered with an error status (its JSON body parsed)
//   ├── kind "network"       no answer at all: offline, DNS, refused, CORS
//   ├── kind "aborted"       the caller cancelled (AbortController)
//   └── kind "bad_response"  an answer that is not the JSON the contract promises
import { env } from "../config/env";
import type { components, paths } from "./schema";

export type ErrorBody = components["schemas"]["ErrorBody"];
export type ModelCard = components["schemas"]["ModelCard"];
export type Health = paths["/"]["get"]["responses"][200]["content"]["application/json"];
export type Prediction = paths["/predict"]["post"]["responses"][200]["content"]["application/json"];
export type PredictForm = paths["/predict"]["post"]["requestBody"]["content"]["multipart/form-data"];

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

export async function request<T>(path: string, init: RequestInit = {}): Promise<T> {
  const signal = init.signal ?? undefined;
  let response: Response;
  try {
    response = await fetch(env.apiUrl + path, { ...init, headers: { Accept: "application/json" } });
  } catch {
    throw new ApiError({ kind: signal?.aborted ? "aborted" : "network" });
  }
  const requestId = response.headers.get("X-Request-ID");
  let body: unknown = null;
  try {
    body = await response.json();
  } catch {
    if (signal?.aborted) throw new ApiError({ kind: "aborted" });
  }
  if (response.ok) {
    if (body === null || typeof body !== "object") {
      throw new ApiError({ kind: "bad_response", status: response.status, requestId });
    }
    return body as T;
  }
  const error = isErrorBody(body) ? body : null;
  throw new ApiError({
    kind: "http",
    status: response.status,
    code: error?.error ?? null,
    detail: error?.detail ?? null,
    requestId: error?.request_id ?? requestId,
    retryAfterS: parseRetryAfter(response.headers.get("Retry-After")),
  });
}

// Cloud Storage's resumable upload, as a browser speaks it: the service opens a session and
// hands the page its URI; the page PUTs the file there in chunks, so a slide of gigabytes never
// passes through the service (whose requests are capped at 32 MiB on Cloud Run).
//
//   PUT chunk, Content-Range: bytes FIRST-LAST/TOTAL
//     308            more expected; Range: bytes=0-N says what storage holds
//     200 / 201      the object is complete
//   dropped connection, timeout, 408, 429 or 5xx: wait (1, 2, 4, 8, 16 s), then ask
//   PUT empty, Content-Range: bytes */TOTAL   (the status query)
//     308            Range: bytes=0-N → resume at N+1; no Range → nothing held, resume at 0
//     200 / 201      complete after all
//   404 / 410        the session is gone (expired or cancelled): start again
//   another 4xx      storage refuses: stop, and say so
//   DELETE URI       cancels the session (the page's Cancel)
//
// Every failure leaves as a BucketUploadError, or the shared ApiError of kind "aborted" when the
// caller cancelled, so the page words them the way it words the service's own errors.
import { ApiError } from "../../../api/client";

export type ResumableSession = {
  /** The session URI the service opened (it carries its own authority: no key, no cookie). */
  url: string;
  /** Bytes per PUT: a multiple of 256 KiB, as Cloud Storage requires of every chunk but the last. */
  chunkBytes: number;
};

export type RetryNotice = { attempt: number; delayMs: number };

export type ResumableOptions = {
  signal?: AbortSignal;
  /** Bytes of the file sent so far (within a chunk too) and the file's size. */
  onProgress?: (sent: number, total: number) => void;
  /** A chunk or a status query failed in a way worth retrying; the next try is `delayMs` away. */
  onRetry?: (notice: RetryNotice) => void;
  /** The waits between tries after a failure; one more failure than there are waits gives up.
   *  Progress resets the count: only failures in a row end the upload. */
  retryDelaysMs?: readonly number[];
  /** A PUT still unanswered after this long counts as a dropped connection. */
  chunkTimeoutMs?: number;
};

export const RETRY_DELAYS_MS: readonly number[] = [1000, 2000, 4000, 8000, 16000];
const CHUNK_TIMEOUT_MS = 5 * 60_000; // an 8 MiB chunk at 28 KB/s: slower than that is a stall

export type BucketUploadFailure =
  | "gave_up" //  the connection kept failing, every retry used
  | "expired" //  storage no longer knows the session (404/410)
  | "refused"; // storage answered another 4xx: retrying would not help

export class BucketUploadError extends Error {
  readonly reason: BucketUploadFailure;
  /** Storage's status on the last try; null when the connection dropped. */
  readonly status: number | null;
  readonly tries: number;

  constructor(reason: BucketUploadFailure, status: number | null, tries: number) {
    super(`bucket upload ${reason}${status ? ` (HTTP ${status})` : ""} after ${tries} tries`);
    this.name = "BucketUploadError";
    this.reason = reason;
    this.status = status;
    this.tries = tries;
  }
}

/** Sends `file` to the session in chunks and resolves once storage holds all of it. */
export async function uploadResumable(file: Blob, session: ResumableSession, options: ResumableOptions = {}): Promise<void> {
  const { signal, onProgress, onRetry, retryDelaysMs = RETRY_DELAYS_MS, chunkTimeoutMs = CHUNK_TIMEOUT_MS } = options;
  const total = file.size;
  const send = (body: Blob | null, contentRange: string, onSent?: (loaded: number) => void) =>
    put(session.url, body, contentRange, { signal, timeoutMs: chunkTimeoutMs, onSent });
  let offset = 0; // the first byte storage does not hold yet
  let failures = 0; // in a row, since storage last took bytes
  let tries = 0;
  let lastStatus: number | null = null;
  let mustAsk = false; // after a failure, storage is asked what it holds before any more bytes go

  try {
    onProgress?.(0, total);
    for (;;) {
      let answer: Answer;
      let end = offset; // one past the chunk's last byte
      tries += 1;
      try {
        if (mustAsk || total === 0) {
          answer = await send(null, `bytes */${total}`);
        } else {
          end = Math.min(offset + session.chunkBytes, total);
          const first = offset;
          answer = await send(file.slice(first, end), `bytes ${first}-${end - 1}/${total}`, (loaded) =>
            onProgress?.(Math.min(first + loaded, total), total),
          );
        }
      } catch (error) {
        if (!(error instanceof Dropped)) throw error;
        answer = { status: 0, range: null };
      }
      lastStatus = answer.status || null;

      if (answer.status === 200 || answer.status === 201) {
        onProgress?.(total, total);
        return;
      }
      if (answer.status === 308) {
        // Without a readable Range: after a chunk, the whole chunk counts as held (a bucket whose
        // CORS rule does not expose Range hides it from the page, where XHR reads null, and storage
        // answered 308 to a chunk it received); after a status query, storage holds nothing new
        // (the protocol's "no Range: nothing held" when nothing was, else what the last 308s said).
        const next = heldThrough(answer.range) ?? (mustAsk ? offset : end);
        if (next > offset) failures = 0;
        offset = next;
        mustAsk = false;
        onProgress?.(offset, total);
        continue;
      }
      if (answer.status === 404 || answer.status === 410) throw new BucketUploadError("expired", answer.status, tries);
      if (answer.status !== 0 && !retryable(answer.status)) throw new BucketUploadError("refused", answer.status, tries);

      const delayMs = retryDelaysMs[failures];
      failures += 1;
      if (delayMs === undefined) throw new BucketUploadError("gave_up", lastStatus, tries);
      onRetry?.({ attempt: failures, delayMs });
      await sleep(delayMs, signal);
      mustAsk = true;
    }
  } catch (error) {
    if (error instanceof ApiError && error.kind === "aborted") cancelResumable(session.url);
    throw error;
  }
}

/** Ends the session so storage drops what it holds; best effort (the page is leaving anyway). */
export function cancelResumable(url: string): void {
  const xhr = new XMLHttpRequest();
  xhr.open("DELETE", url);
  xhr.onerror = () => undefined;
  xhr.send(null);
}

/** One past the last byte storage says it holds ("bytes=0-N" → N+1); null when unreadable. */
export function heldThrough(range: string | null): number | null {
  const match = range?.match(/^bytes=0-(\d+)$/);
  return match ? Number(match[1]) + 1 : null;
}

function retryable(status: number): boolean {
  // Cloud Storage's own retry guidance: 408 and 429 are worth another try, as is any 5xx.
  return status === 408 || status === 429 || (status >= 500 && status < 600);
}

type Answer = { status: number; range: string | null };

/** No answer: the connection dropped or the PUT timed out. */
class Dropped extends Error {}

function put(
  url: string,
  body: Blob | null,
  contentRange: string,
  { signal, timeoutMs, onSent }: { signal?: AbortSignal; timeoutMs: number; onSent?: (loaded: number) => void },
): Promise<Answer> {
  return new Promise<Answer>((resolve, reject) => {
    if (signal?.aborted) return reject(new ApiError({ kind: "aborted" }));
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    xhr.timeout = timeoutMs;
    xhr.setRequestHeader("Content-Range", contentRange);
    xhr.upload.onprogress = (event) => onSent?.(event.loaded);
    const abort = () => xhr.abort();
    signal?.addEventListener("abort", abort);
    const settle = (outcome: () => void) => {
      signal?.removeEventListener("abort", abort);
      outcome();
    };
    xhr.onabort = () => settle(() => reject(new ApiError({ kind: "aborted" })));
    xhr.onerror = () => settle(() => reject(new Dropped()));
    xhr.ontimeout = () => settle(() => reject(new Dropped()));
    xhr.onload = () => settle(() => resolve({ status: xhr.status, range: readableHeader(xhr, "range") }));
    xhr.send(body);
  });
}

/** A response header, or null when absent or hidden by CORS. Read from the whole list, because
 *  Chrome logs "Refused to get unsafe header" for each getResponseHeader of a hidden one. */
function readableHeader(xhr: XMLHttpRequest, name: string): string | null {
  const line = xhr
    .getAllResponseHeaders()
    .split("\r\n")
    .find((header) => header.toLowerCase().startsWith(`${name}:`));
  return line === undefined ? null : line.slice(name.length + 1).trim();
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new ApiError({ kind: "aborted" }));
    const stop = () => {
      clearTimeout(timer);
      reject(new ApiError({ kind: "aborted" }));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", stop);
      resolve();
    }, ms);
    signal?.addEventListener("abort", stop, { once: true });
  });
}

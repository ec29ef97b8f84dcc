// A fake Cloud Storage resumable-upload session behind XMLHttpRequest, for the page's
// direct-to-bucket upload (src/features/slides/api/resumableUpload.ts). It follows the documented
// protocol, which the emulator the browser test runs against does not for status queries
// (fake-gcs-server finalises the object on one):
//
//   PUT bytes FIRST-LAST/TOTAL   FIRST must be the next byte held, else 400 (as Cloud Storage says
//                                "the upload offset … exceeds already uploaded size"); 308 with
//                                Range: bytes=0-N until the last byte, then 200 with the object
//   PUT bytes */TOTAL            the status query: 308 (Range when anything is held) or 200
//   DELETE                       cancels: 499, then 404 for anything after
//
// Tests script what goes wrong with which PUT (a connection dropped part-way through a chunk, a
// 5xx, a chunk left hanging) and read back exactly the bytes the session holds:
//
//   const bucket = fakeBucket().on(2, dropsAfter(100 * 1024));
import { vi } from "vitest";

type Progress = { lengthComputable: boolean; loaded: number; total: number };
export type Fault =
  | { kind: "drop"; keep: number } //    the connection drops after `keep` bytes of the chunk reached storage
  | { kind: "status"; status: number } // the request is answered `status`, nothing kept
  | { kind: "keep_only"; keep: number } // 308, but storage kept only `keep` bytes of the chunk (it may)
  | { kind: "timeout" } //                 no answer before the page's timeout
  | { kind: "hang" } //                     half the chunk goes, then nothing until the page aborts
  | { kind: "pause"; until: Promise<void> }; // half the chunk goes, the rest once `until` resolves

export const dropsAfter = (keep: number): Fault => ({ kind: "drop", keep });
export const answers = (status: number): Fault => ({ kind: "status", status });
export const keepsOnly = (keep: number): Fault => ({ kind: "keep_only", keep });
export const timesOut: Fault = { kind: "timeout" };
export const hangs: Fault = { kind: "hang" };
export const pausesUntil = (until: Promise<void>): Fault => ({ kind: "pause", until });

export class FakeResumableSession {
  readonly url: string;
  // What happened, one line a request: "PUT bytes 0-1023/4096 → 308 bytes=0-1023",
  // "PUT bytes */4096 → 308 bytes=0-511" (a status query), "PUT … → dropped", "DELETE → 499".
  readonly log: string[] = [];
  /** false: the 308s' Range header cannot be read, as when the bucket's CORS rule does not expose it. */
  exposeRange = true;
  /** What the last chunk (or a status query after it) is answered: Cloud Storage says 200 or 201. */
  completeStatus: 200 | 201 = 200;
  cancelled = false;
  private chunks: Uint8Array[] = [];
  private heldBytes = 0;
  private total: number | null = null;
  private faults = new Map<number, Fault>();
  private faultFrom: { first: number; fault: Fault } | null = null;
  private puts = 0;

  constructor(url = "https://storage.test/upload/storage/v1/b/slides/o?uploadType=resumable&upload_id=s1") {
    this.url = url;
  }

  /** The bytes the session holds, in order. */
  held(): Uint8Array {
    const out = new Uint8Array(this.heldBytes);
    let at = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, at);
      at += chunk.length;
    }
    return out;
  }

  /** "identical" when the session holds exactly `file`'s bytes, else where they part. */
  async compareWith(file: Blob): Promise<string> {
    const held = this.held();
    const want = new Uint8Array(await file.arrayBuffer());
    if (held.length !== want.length) return `${held.length} bytes held, ${want.length} in the file`;
    const at = held.findIndex((byte, i) => byte !== want[i]);
    return at === -1 ? "identical" : `the bytes differ from byte ${at} on`;
  }

  get complete(): boolean {
    return this.total !== null && this.heldBytes === this.total;
  }

  /** PUT number `n` (1 = the session's first) goes wrong this way; unscripted PUTs go well. */
  on(n: number, fault: Fault): this {
    this.faults.set(n, fault);
    return this;
  }

  /** Every PUT from number `n` on goes wrong this way. */
  onEveryFrom(n: number, fault: Fault): this {
    this.faultFrom = { first: n, fault };
    return this;
  }

  /** @internal FakeBucketXhr hands each request here. */
  async handle(xhr: FakeBucketXhr, body: Blob | null): Promise<void> {
    if (xhr.method === "DELETE") {
      this.cancelled = true;
      return this.answer(xhr, "DELETE", 499);
    }
    const contentRange = xhr.requestHeaders["content-range"] ?? "";
    const what = `PUT ${contentRange}`;
    if (this.cancelled) return this.answer(xhr, what, 404);
    this.puts += 1;
    const fault = this.faults.get(this.puts) ?? (this.faultFrom && this.puts >= this.faultFrom.first ? this.faultFrom.fault : undefined);
    if (fault?.kind === "status") return this.answer(xhr, what, fault.status);
    if (fault?.kind === "timeout") {
      this.log.push(`${what} → timed out`);
      return xhr.fail("timeout");
    }

    const status = contentRange.match(/^bytes \*\/(\d+)$/);
    if (status) {
      if (fault?.kind === "drop") {
        this.log.push(`${what} → dropped`);
        return xhr.fail("error");
      }
      if (fault?.kind === "pause") await fault.until;
      this.total = Number(status[1]);
      return this.answerHeld(xhr, what);
    }
    const range = contentRange.match(/^bytes (\d+)-(\d+)\/(\d+)$/);
    if (!range || !body) return this.answer(xhr, what, 400);
    const [first, last, total] = [Number(range[1]), Number(range[2]), Number(range[3])];
    const bytes = new Uint8Array(await body.arrayBuffer());
    if (bytes.length !== last - first + 1 || first !== this.heldBytes || (this.total !== null && total !== this.total)) {
      return this.answer(xhr, what, 400);
    }
    this.total = total;

    if (fault?.kind === "hang") {
      this.log.push(`${what} → hanging`);
      xhr.progress(Math.floor(bytes.length / 2), bytes.length);
      return; // until the page aborts
    }
    if (fault?.kind === "pause") {
      xhr.progress(Math.floor(bytes.length / 2), bytes.length);
      await fault.until;
    }
    const keep = fault?.kind === "drop" || fault?.kind === "keep_only" ? fault.keep : bytes.length;
    xhr.progress(Math.floor(keep / 2), bytes.length);
    await tick();
    xhr.progress(keep, bytes.length);
    this.keep(bytes.subarray(0, keep));
    if (fault?.kind === "drop") {
      this.log.push(`${what} → dropped`);
      return xhr.fail("error");
    }
    return this.answerHeld(xhr, what);
  }

  private keep(bytes: Uint8Array) {
    this.chunks.push(bytes.slice());
    this.heldBytes += bytes.length;
  }

  private answerHeld(xhr: FakeBucketXhr, what: string) {
    if (this.complete) return this.answer(xhr, what, this.completeStatus, { kind: "storage#object", size: String(this.total) });
    const range = this.heldBytes > 0 ? `bytes=0-${this.heldBytes - 1}` : null;
    const headers: Record<string, string> = range && this.exposeRange ? { Range: range } : {};
    this.log.push(`${what} → 308${range ? ` ${range}` : ""}`);
    xhr.respond(308, headers, "");
  }

  private answer(xhr: FakeBucketXhr, what: string, status: number, body: unknown = {}) {
    this.log.push(`${what} → ${status}`);
    xhr.respond(status, {}, JSON.stringify(body));
  }
}

/** The XMLHttpRequest the page sees: every request goes to `session`, whose URL it must name. */
export class FakeBucketXhr {
  static session: FakeResumableSession;
  method = "";
  url = "";
  status = 0;
  responseText = "";
  timeout = 0;
  aborted = false;
  requestHeaders: Record<string, string> = {};
  upload: { onprogress: ((event: Progress) => void) | null } = { onprogress: null };
  onload: (() => void) | null = null;
  onerror: (() => void) | null = null;
  ontimeout: (() => void) | null = null;
  onabort: (() => void) | null = null;
  private responseHeaders: Record<string, string> = {};
  private settled = false;

  open(method: string, url: string) {
    this.method = method;
    this.url = url;
  }
  setRequestHeader(name: string, value: string) {
    this.requestHeaders[name.toLowerCase()] = value;
  }
  send(body: Blob | null = null) {
    const session = FakeBucketXhr.session;
    if (this.url !== session.url) throw new Error(`unexpected ${this.method} ${this.url}: not the session's URL`);
    // Answer on a later turn, as the network does, so the page can abort a chunk in flight.
    setTimeout(() => void session.handle(this, body), 0);
  }
  abort() {
    if (this.settled) return;
    this.settled = true;
    this.aborted = true;
    FakeBucketXhr.session.log.push(`${this.method} aborted`);
    this.onabort?.();
  }
  getAllResponseHeaders(): string {
    return Object.entries(this.responseHeaders).map(([name, value]) => `${name}: ${value}\r\n`).join("");
  }

  progress(loaded: number, total: number) {
    if (!this.settled) this.upload.onprogress?.({ lengthComputable: true, loaded, total });
  }
  respond(status: number, headers: Record<string, string>, body: string) {
    if (this.settled) return;
    this.settled = true;
    this.status = status;
    this.responseText = body;
    this.responseHeaders = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
    this.onload?.();
  }
  fail(how: "error" | "timeout") {
    if (this.settled) return;
    this.settled = true;
    (how === "error" ? this.onerror : this.ontimeout)?.();
  }
}

/** Stubs XMLHttpRequest with one resumable session; returns it for the test to script and read. */
export function fakeBucket(session = new FakeResumableSession()): FakeResumableSession {
  FakeBucketXhr.session = session;
  vi.stubGlobal("XMLHttpRequest", FakeBucketXhr);
  return session;
}

function tick(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

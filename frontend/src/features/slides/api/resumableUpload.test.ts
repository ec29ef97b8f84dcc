import { describe, expect, it, vi } from "vitest";
import { ApiError } from "../../../api/client";
import { answers, dropsAfter, fakeBucket, hangs, keepsOnly, timesOut, type Fault } from "../../../testing/resumableBucket";
import { BucketUploadError, RETRY_DELAYS_MS, heldThrough, uploadResumable, type RetryNotice } from "./resumableUpload";

const KiB = 1024;
const CHUNK = 256 * KiB;
const NO_WAIT = [0, 0, 0, 0, 0];

/** A file of `size` bytes that are not all alike, so a misplaced or repeated chunk shows. */
function slide(size: number): File {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + (i >> 10)) & 0xff;
  return new File([bytes], "slide.svs");
}

async function failure(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected the upload to fail");
}

describe("uploadResumable", () => {
  it("sends the file in chunks with Content-Range, reporting bytes sent within each chunk, until storage holds all of it", async () => {
    const bucket = fakeBucket();
    const file = slide(2 * CHUNK + 1000);
    const seen: number[] = [];

    await uploadResumable(file, { url: bucket.url, chunkBytes: CHUNK }, { onProgress: (sent, total) => seen.push(sent / total) });

    expect(bucket.log).toEqual([
      `PUT bytes 0-${CHUNK - 1}/${file.size} → 308 bytes=0-${CHUNK - 1}`,
      `PUT bytes ${CHUNK}-${2 * CHUNK - 1}/${file.size} → 308 bytes=0-${2 * CHUNK - 1}`,
      `PUT bytes ${2 * CHUNK}-${file.size - 1}/${file.size} → 200`,
    ]);
    expect(await bucket.compareWith(file)).toBe("identical");
    expect(seen[0]).toBe(0);
    expect(seen.at(-1)).toBe(1);
    expect(seen.some((fraction) => fraction > 0 && fraction < CHUNK / file.size)).toBe(true); // part of the first chunk
    expect(seen).toEqual([...seen].sort((a, b) => a - b)); // never backwards when nothing fails
  });

  it("resumes a connection dropped mid-chunk from the offset storage holds, asking first", async () => {
    const bucket = fakeBucket().on(2, dropsAfter(100 * KiB));
    const file = slide(3 * CHUNK + 500);
    const retries: RetryNotice[] = [];

    await uploadResumable(file, { url: bucket.url, chunkBytes: CHUNK }, { retryDelaysMs: NO_WAIT, onRetry: (notice) => retries.push(notice) });

    const resumeAt = CHUNK + 100 * KiB;
    expect(bucket.log).toEqual([
      `PUT bytes 0-${CHUNK - 1}/${file.size} → 308 bytes=0-${CHUNK - 1}`,
      `PUT bytes ${CHUNK}-${2 * CHUNK - 1}/${file.size} → dropped`,
      `PUT bytes */${file.size} → 308 bytes=0-${resumeAt - 1}`,
      `PUT bytes ${resumeAt}-${resumeAt + CHUNK - 1}/${file.size} → 308 bytes=0-${resumeAt + CHUNK - 1}`,
      `PUT bytes ${resumeAt + CHUNK}-${file.size - 1}/${file.size} → 200`,
    ]);
    expect(await bucket.compareWith(file)).toBe("identical"); // every byte once, in order
    expect(retries).toEqual([{ attempt: 1, delayMs: 0 }]);
  });

  it("starts again from byte 0 when the status query says storage holds nothing (308 without Range)", async () => {
    const bucket = fakeBucket().on(1, dropsAfter(0));
    const file = slide(CHUNK + 10);
    await uploadResumable(file, { url: bucket.url, chunkBytes: CHUNK }, { retryDelaysMs: NO_WAIT });
    expect(bucket.log.slice(1, 3)).toEqual([`PUT bytes */${file.size} → 308`, `PUT bytes 0-${CHUNK - 1}/${file.size} → 308 bytes=0-${CHUNK - 1}`]);
    expect(await bucket.compareWith(file)).toBe("identical");
  });

  it("asks again when the status query itself fails", async () => {
    const bucket = fakeBucket().on(2, dropsAfter(CHUNK / 2)).on(3, dropsAfter(0)).on(4, answers(502));
    const file = slide(2 * CHUNK);
    await uploadResumable(file, { url: bucket.url, chunkBytes: CHUNK }, { retryDelaysMs: NO_WAIT });
    expect(bucket.log.slice(2, 5)).toEqual([`PUT bytes */${file.size} → dropped`, `PUT bytes */${file.size} → 502`, `PUT bytes */${file.size} → 308 bytes=0-${CHUNK + CHUNK / 2 - 1}`]);
    expect(await bucket.compareWith(file)).toBe("identical");
  });

  it("starts the next chunk where storage says it stopped when it kept less than was sent", async () => {
    const bucket = fakeBucket().on(1, keepsOnly(CHUNK / 2));
    const file = slide(CHUNK + 10);
    await uploadResumable(file, { url: bucket.url, chunkBytes: CHUNK });
    expect(bucket.log[1]).toBe(`PUT bytes ${CHUNK / 2}-${file.size - 1}/${file.size} → 200`);
    expect(await bucket.compareWith(file)).toBe("identical");
  });

  it.each<[string, Fault]>([
    ["a 503", answers(503)],
    ["a 500", answers(500)],
    ["a 429", answers(429)],
    ["a 408", answers(408)],
    ["a timeout", timesOut],
    ["a connection dropped before any byte arrived", dropsAfter(0)],
  ])("retries a chunk after %s and completes the file exactly", async (_, fault) => {
    const bucket = fakeBucket().on(2, fault);
    const file = slide(2 * CHUNK + 7);
    await uploadResumable(file, { url: bucket.url, chunkBytes: CHUNK }, { retryDelaysMs: NO_WAIT });
    expect(bucket.log[2]).toBe(`PUT bytes */${file.size} → 308 bytes=0-${CHUNK - 1}`);
    expect(await bucket.compareWith(file)).toBe("identical");
  });

  it("reads a 308 whose Range the bucket's CORS rule hides as the whole chunk held", async () => {
    const bucket = fakeBucket();
    bucket.exposeRange = false;
    const file = slide(2 * CHUNK + 3);
    await uploadResumable(file, { url: bucket.url, chunkBytes: CHUNK });
    expect(bucket.log.map((line) => line.split(" → ")[0])).toEqual([
      `PUT bytes 0-${CHUNK - 1}/${file.size}`,
      `PUT bytes ${CHUNK}-${2 * CHUNK - 1}/${file.size}`,
      `PUT bytes ${2 * CHUNK}-${file.size - 1}/${file.size}`,
    ]);
    expect(await bucket.compareWith(file)).toBe("identical");
  });

  it("resumes after the last chunk storage answered, when the bucket hides Range from the status query too", async () => {
    const bucket = fakeBucket().on(2, dropsAfter(0));
    bucket.exposeRange = false;
    const file = slide(2 * CHUNK + 3);
    await uploadResumable(file, { url: bucket.url, chunkBytes: CHUNK }, { retryDelaysMs: NO_WAIT });
    expect(bucket.log[3]).toBe(`PUT bytes ${CHUNK}-${2 * CHUNK - 1}/${file.size} → 308 bytes=0-${2 * CHUNK - 1}`);
    expect(await bucket.compareWith(file)).toBe("identical");
  });

  it("takes a 201 as complete, as Cloud Storage may answer", async () => {
    const bucket = fakeBucket();
    bucket.completeStatus = 201;
    const file = slide(CHUNK + 1);
    await uploadResumable(file, { url: bucket.url, chunkBytes: CHUNK });
    expect(bucket.log.at(-1)).toBe(`PUT bytes ${CHUNK}-${CHUNK}/${file.size} → 201`);
  });

  it("gives up after failures in a row, backing off 1, 2, 4, 8 and 16 s between tries", async () => {
    vi.useFakeTimers();
    const bucket = fakeBucket().onEveryFrom(2, answers(503));
    const retries: RetryNotice[] = [];
    const upload = failure(uploadResumable(slide(2 * CHUNK), { url: bucket.url, chunkBytes: CHUNK }, { onRetry: (notice) => retries.push(notice) }));
    await vi.runAllTimersAsync();
    const error = await upload;

    expect(error).toBeInstanceOf(BucketUploadError);
    expect(error).toMatchObject({ reason: "gave_up", status: 503, tries: 7 }); // the first chunk, then 6 tries of the second
    expect(retries.map((notice) => notice.delayMs)).toEqual([1000, 2000, 4000, 8000, 16000]);
    expect(RETRY_DELAYS_MS).toEqual([1000, 2000, 4000, 8000, 16000]);
    expect(bucket.log.slice(2)).toEqual(Array(5).fill(`PUT bytes */${2 * CHUNK} → 503`));
  });

  it("counts only failures in a row: storage taking bytes between them starts the count again", async () => {
    const bucket = fakeBucket();
    for (const put of [2, 5, 8]) bucket.on(put, dropsAfter(CHUNK / 4)); // three chunks drop, each after a quarter was held
    const file = slide(4 * CHUNK);
    await uploadResumable(file, { url: bucket.url, chunkBytes: CHUNK }, { retryDelaysMs: [0] }); // one retry at a time
    expect(bucket.log.filter((line) => line.endsWith("dropped"))).toHaveLength(3);
    expect(await bucket.compareWith(file)).toBe("identical");
  });

  it.each([
    [403, "refused"],
    [400, "refused"],
    [404, "expired"],
    [410, "expired"],
  ])("stops at a %s without retrying (%s)", async (status, reason) => {
    const bucket = fakeBucket().on(2, answers(status));
    const error = await failure(uploadResumable(slide(3 * CHUNK), { url: bucket.url, chunkBytes: CHUNK }, { retryDelaysMs: NO_WAIT }));
    expect(error).toBeInstanceOf(BucketUploadError);
    expect(error).toMatchObject({ reason, status, tries: 2 });
    expect(bucket.log).toHaveLength(2);
  });

  it("cancels: aborts the chunk in flight and ends the session with DELETE", async () => {
    const bucket = fakeBucket().on(2, hangs);
    const abort = new AbortController();
    const upload = failure(
      uploadResumable(slide(3 * CHUNK), { url: bucket.url, chunkBytes: CHUNK }, {
        signal: abort.signal,
        onProgress: (sent) => sent > CHUNK && abort.abort(), // half of the second chunk is on its way
      }),
    );
    const error = await upload;
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ kind: "aborted" });
    await vi.waitFor(() => expect(bucket.cancelled).toBe(true));
    expect(bucket.log.slice(1)).toEqual([`PUT bytes ${CHUNK}-${2 * CHUNK - 1}/${3 * CHUNK} → hanging`, "PUT aborted", "DELETE → 499"]);
  });

  it("cancels while waiting to retry, without waiting out the delay", async () => {
    const bucket = fakeBucket().on(1, answers(503));
    const abort = new AbortController();
    const error = await failure(
      uploadResumable(slide(CHUNK), { url: bucket.url, chunkBytes: CHUNK }, { signal: abort.signal, retryDelaysMs: [3_600_000], onRetry: () => abort.abort() }),
    );
    expect(error).toMatchObject({ kind: "aborted" });
    await vi.waitFor(() => expect(bucket.cancelled).toBe(true));
  });

  it("finishes an empty file with one status query", async () => {
    const bucket = fakeBucket();
    await uploadResumable(new File([], "empty.svs"), { url: bucket.url, chunkBytes: CHUNK });
    expect(bucket.log).toEqual(["PUT bytes */0 → 200"]);
  });
});

describe("heldThrough", () => {
  it.each([
    ["bytes=0-262143", 262144],
    ["bytes=0-0", 1],
    [null, null],
    ["", null],
    ["bytes=5-9", null], // storage only ever reports from byte 0
    ["bytes 0-9", null],
  ])("reads Range %j as %s bytes held", (range, held) => {
    expect(heldThrough(range)).toBe(held);
  });
});

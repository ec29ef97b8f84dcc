import { act, fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import type { SlideJob, SlideTiles } from "../../../api/client";
import { health, json, MODEL } from "../../../testing/fetch";
import { fakeXhr } from "../../../testing/xhr";
import { answers, dropsAfter, fakeBucket, FakeResumableSession, hangs, pausesUntil } from "../../../testing/resumableBucket";
import { SlidePage } from "./SlidePage";

const svs = () => new File([new Uint8Array([73, 73, 42, 0, 1, 2, 3, 4])], "CMU-1.svs", { type: "" });

function job(overrides: Partial<SlideJob> = {}): SlideJob {
  return {
    id: "job1",
    status: "running",
    question: "Is colorectal cancer present?",
    slide: { width: 2000, height: 1000, levels: 1, vendor: "aperio", mpp: 0.5, tile_mpp: 0.5, tile_size: 500, tile_px: 512 },
    progress: { tiles_done: 0, tiles_total: 3, elapsed_s: 0, eta_s: null, queue_position: null },
    summary: null,
    error: null,
    heatmap_url: null,
    tiles_url: null,
    expires_in_s: null,
    model: { ...MODEL },
    disclaimer: "Screening aid only, not a diagnosis (from the service).",
    ...overrides,
  };
}

const doneJob = () =>
  job({
    status: "done",
    progress: { tiles_done: 3, tiles_total: 3, elapsed_s: 6, eta_s: null, queue_position: null },
    summary: {
      tissue_found: true, tiles_scored: 3, tiles_unanswered: 0, min_answer_mass: 0.5, max_probability: 0.91, top_k: 3, top_k_mean: 0.6,
      threshold: 0.5, tiles_above_threshold: 2, area_fraction_above: 2 / 3,
    },
    heatmap_url: "/slides/job1/heatmap.png",
    tiles_url: "/slides/job1/tiles",
    expires_in_s: 3600,
  });

const tiles = (): SlideTiles => ({
  id: "job1", width: 2000, height: 1000, threshold: 0.5, disclaimer: "Screening aid only.",
  tiles: [
    { x: 0, y: 0, size: 500, tissue: 1, probability: 0.91, answer_mass: 0.9 },
    { x: 500, y: 0, size: 500, tissue: 0.8, probability: 0.6, answer_mass: 0.9 },
    { x: 500, y: 500, size: 500, tissue: 0.6, probability: 0.29, answer_mass: 0.9 },
  ],
});

/** GET / answers health; each GET /slides/job1 takes the next of `polls`; DELETE and /tiles as given. */
function slideService(polls: Response[], extra: Record<string, () => Response> = {}) {
  const queue = [...polls];
  const fetchMock = vi.fn(async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const url = String(input);
    const key = `${init.method ?? "GET"} ${url}`;
    if (extra[key]) return extra[key]();
    if (url.endsWith("/")) return json(200, health(true));
    if (key === "GET /slides/job1") return queue.shift() ?? json(200, doneJob());
    if (key === "GET /slides/job1/tiles") return json(200, tiles());
    throw new Error(`unexpected request ${key}`);
  });
  vi.stubGlobal("fetch", fetchMock);
  return fetchMock;
}

async function pickAndSubmit(user: ReturnType<typeof userEvent.setup>) {
  await user.upload(screen.getByLabelText(/choose a slide/i), svs());
  await user.click(screen.getByRole("button", { name: "Screen slide" }));
}

describe("SlidePage", () => {
  it("uploads a slide with progress, follows tiles scored with an ETA, then shows the heatmap and summary", async () => {
    const Xhr = fakeXhr();
    const running = () => json(200, job({ progress: { tiles_done: 1, tiles_total: 3, elapsed_s: 2, eta_s: 4, queue_position: null } }));
    slideService([running(), running(), running(), running()]); // 1 of 3 for ~200 ms, then done
    const user = userEvent.setup();
    render(<SlidePage pollMs={50} />);
    await pickAndSubmit(user);

    const upload = Xhr.sent[0]!;
    expect(upload.method).toBe("POST");
    expect(upload.url).toBe("/slides");
    expect(((upload.body as FormData).get("slide_file") as File).name).toBe("CMU-1.svs");
    act(() => upload.progress(50, 200));
    expect(screen.getByRole("progressbar", { name: "Upload" })).toHaveAttribute("aria-valuenow", "25");
    act(() => upload.respond(202, job()));

    await waitFor(() => {
      expect(screen.getByText(/1 of 3 tissue tiles scored · about 4 s left/)).toBeVisible();
      expect(screen.getByRole("progressbar", { name: "Tiles scored" })).toHaveAttribute("aria-valuetext", "1 of 3 tiles");
    });

    const result = await screen.findByRole("region", { name: "Slide heatmap" });
    const summary = within(result).getByLabelText("Slide summary");
    expect(summary).toHaveTextContent("Highest tile P(yes)0.91");
    expect(summary).toHaveTextContent("Mean of top 30.60");
    expect(summary).toHaveTextContent("2 of 3 (67% of tissue)");
    expect(summary).toHaveTextContent("P(yes) ≥ 0.5");
    const image = within(result).getByRole("img", { name: /heatmap of p\(yes\) per tile over cmu-1\.svs/i });
    expect(image).toHaveAttribute("src", "/slides/job1/heatmap.png?legend=false");
    expect(screen.getByRole("note", { name: "Disclaimer" })).toBeVisible();
    expect(screen.getByRole("note", { name: "Demo model" })).toBeVisible();
    expect(result).toHaveFocus();

    // The image is drawn 400×200 px: the slide (2000×1000) at 1/5. (250, 150) is level-0 (1250, 750)…
    const heatmap = image;
    heatmap.getBoundingClientRect = () => ({ left: 0, top: 0, width: 400, height: 200, right: 400, bottom: 200, x: 0, y: 0, toJSON: () => ({}) });
    fireEvent.mouseMove(heatmap, { clientX: 150, clientY: 150 }); // level-0 (750, 750): the third tile
    expect(screen.getByRole("status", { name: "Tile" })).toHaveTextContent("x 500, y 500");
    expect(screen.getByRole("status", { name: "Tile" })).toHaveTextContent("P(yes) 0.29, 60% tissue");
    fireEvent.click(heatmap, { clientX: 10, clientY: 10 }); // the first tile, kept after the pointer leaves
    fireEvent.mouseLeave(heatmap);
    expect(screen.getByRole("status", { name: "Tile" })).toHaveTextContent("x 0, y 0 (level-0 px, 500 px square): P(yes) 0.91");
    fireEvent.mouseMove(heatmap, { clientX: 350, clientY: 50 }); // background: no tile there
    expect(screen.getByRole("status", { name: "Tile" })).toHaveTextContent("x 0, y 0");
  });

  it("cancels a slide being scored: the page stops polling and asks the service to cancel", async () => {
    const Xhr = fakeXhr();
    const cancelled = vi.fn(() => json(200, job({ status: "cancelled" })));
    const fetchMock = slideService(Array.from({ length: 1000 }, () => json(200, job())), { "DELETE /slides/job1": cancelled });
    const user = userEvent.setup();
    render(<SlidePage pollMs={5} />);
    await pickAndSubmit(user);
    act(() => Xhr.sent[0]!.respond(202, job()));
    await screen.findByText(/0 of 3 tissue tiles scored/);

    await user.click(screen.getByRole("button", { name: "Cancel" }));

    expect(await screen.findByText("The slide was cancelled; the service stopped scoring it.")).toBeVisible();
    expect(cancelled).toHaveBeenCalledTimes(1);
    const polls = fetchMock.mock.calls.filter(([url, init]) => String(url).endsWith("/slides/job1") && !init?.method?.includes("DELETE")).length;
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(fetchMock.mock.calls.filter(([url, init]) => String(url).endsWith("/slides/job1") && !init?.method?.includes("DELETE")).length).toBe(polls);
    expect(screen.getByRole("button", { name: "Screen slide" })).toBeEnabled();
  });

  it("cancels an upload in flight without creating a job", async () => {
    const Xhr = fakeXhr();
    const fetchMock = slideService([]);
    const user = userEvent.setup();
    render(<SlidePage pollMs={5} />);
    await pickAndSubmit(user);
    await user.click(screen.getByRole("button", { name: "Cancel" }));
    expect(Xhr.sent[0]!.aborted).toBe(true);
    expect(await screen.findByText("The upload was cancelled. Nothing was kept.")).toBeVisible();
    expect(fetchMock.mock.calls.some(([, init]) => init?.method === "DELETE")).toBe(false);
  });

  it.each([
    [415, "unsupported_slide", "Not a slide"],
    [400, "corrupt_slide", "Slide could not be read"],
    [413, "too_many_tiles", "Too much tissue"],
    [413, "upload_too_large", "Slide too large"],
  ])("explains a %s %s in words", async (status, code, title) => {
    const Xhr = fakeXhr();
    slideService([]);
    const user = userEvent.setup();
    render(<SlidePage pollMs={5} />);
    await pickAndSubmit(user);
    act(() => Xhr.sent[0]!.respond(status, { error: code, detail: "From the service.", request_id: "req-9" }));
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent(title);
    expect(alert).toHaveTextContent("Reference: req-9");
  });

  it("says so when the slide has no tissue", async () => {
    const Xhr = fakeXhr();
    const empty = doneJob();
    empty.summary = { ...empty.summary!, tissue_found: false, tiles_scored: 0, max_probability: null, top_k: 0, top_k_mean: null, tiles_above_threshold: 0, area_fraction_above: null };
    slideService([], { "GET /slides/job1/tiles": () => json(200, { ...tiles(), tiles: [] }) });
    const user = userEvent.setup();
    render(<SlidePage pollMs={5} />);
    await pickAndSubmit(user);
    act(() => Xhr.sent[0]!.respond(202, empty));
    expect(await screen.findByRole("note", { name: "No tissue" })).toHaveTextContent("No tissue found on this slide");
  });

  it("shows the slide's triage band, how many tiles fell in each, and each tile's band", async () => {
    const Xhr = fakeXhr();
    const banded = doneJob();
    banded.summary = {
      ...banded.summary!, triage: "rule-in", tiles_per_band: { "rule-out": 1, refer: 1, "rule-in": 1 },
      triage_thresholds: { rule_out: 0.3, rule_in: 0.8 },
    };
    const bandedTiles = tiles();
    bandedTiles.triage = { rule_out: 0.3, rule_in: 0.8 };
    bandedTiles.tiles = bandedTiles.tiles.map((tile, i) => ({ ...tile, triage: (["rule-in", "refer", "rule-out"] as const)[i] }));
    slideService([], { "GET /slides/job1/tiles": () => json(200, bandedTiles) });
    const user = userEvent.setup();
    render(<SlidePage pollMs={5} />);
    await pickAndSubmit(user);
    act(() => Xhr.sent[0]!.respond(202, banded));
    const triage = await screen.findByLabelText("Slide triage");
    expect(triage).toHaveTextContent("Triage: RULE-IN suspicious: review first (its most urgent tile) · 1 rule-in · 1 refer · 1 rule-out tiles");
    expect(screen.getByLabelText("Colour scale")).toHaveTextContent("red outline: rule-in (P(yes) > 0.8)");
    const image = screen.getByRole("img", { name: /heatmap of p\(yes\) per tile/i });
    image.getBoundingClientRect = () => ({ left: 0, top: 0, width: 400, height: 200, right: 400, bottom: 200, x: 0, y: 0, toJSON: () => ({}) });
    fireEvent.mouseMove(image, { clientX: 10, clientY: 10 });
    expect(screen.getByRole("status", { name: "Tile" })).toHaveTextContent("P(yes) 0.91, triage rule-in (suspicious: review first)");
  });

  it("shows no triage when the service has no triage thresholds", async () => {
    const Xhr = fakeXhr();
    slideService([]);
    const user = userEvent.setup();
    render(<SlidePage pollMs={5} />);
    await pickAndSubmit(user);
    act(() => Xhr.sent[0]!.respond(202, doneJob()));
    await screen.findByLabelText("Slide summary");
    expect(screen.queryByLabelText("Slide triage")).not.toBeInTheDocument();
  });

  it("counts tiles the model did not answer apart and says so for each of them", async () => {
    const Xhr = fakeXhr();
    const partial = doneJob();
    partial.summary = { ...partial.summary!, tiles_unanswered: 1, max_probability: 0.6, top_k: 2, tiles_above_threshold: 1, area_fraction_above: 0.5 };
    const silentFirst = tiles();
    silentFirst.tiles[0] = { ...silentFirst.tiles[0]!, answer_mass: 0.12 };
    slideService([], { "GET /slides/job1/tiles": () => json(200, silentFirst) });
    const user = userEvent.setup();
    render(<SlidePage pollMs={5} />);
    await pickAndSubmit(user);
    act(() => Xhr.sent[0]!.respond(202, partial));
    const summary = await screen.findByLabelText("Slide summary");
    expect(summary).toHaveTextContent("1 of 2 (50% of tissue)");
    expect(summary).toHaveTextContent("Tiles without an answer1 of 3: the model did not say yes or no");
    const image = screen.getByRole("img", { name: /heatmap of p\(yes\) per tile/i });
    image.getBoundingClientRect = () => ({ left: 0, top: 0, width: 400, height: 200, right: 400, bottom: 200, x: 0, y: 0, toJSON: () => ({}) });
    fireEvent.mouseMove(image, { clientX: 10, clientY: 10 }); // the first tile: it did not answer
    expect(screen.getByRole("status", { name: "Tile" })).toHaveTextContent("no answer (only 12% of the model's probability on yes or no)");
    expect(screen.getByRole("status", { name: "Tile" })).not.toHaveTextContent("P(yes)");
  });

  it("shows a job that failed on the service with its reason", async () => {
    const Xhr = fakeXhr();
    slideService([json(200, job({ status: "failed", error: "The slide's pixels could not be read." }))]);
    const user = userEvent.setup();
    render(<SlidePage pollMs={5} />);
    await pickAndSubmit(user);
    act(() => Xhr.sent[0]!.respond(202, job()));
    expect(await screen.findByRole("alert")).toHaveTextContent("The slide's pixels could not be read.");
  });
});

describe("SlidePage, straight to the bucket", () => {
  const MiB = 1024 * 1024;
  const SESSION_URL = "https://storage.test/upload/storage/v1/b/healer/o?uploadType=resumable&upload_id=s1";
  /** 2.5 MiB of varied bytes: three 1 MiB chunks, the last half full. */
  const bigSlide = () => new File([Uint8Array.from({ length: 2.5 * MiB }, (_, i) => (i * 7 + (i >> 12)) & 0xff)], "large.tiff");

  const offering = (upload: "bucket" | "form") => () => json(200, { ...health(true), slides: { upload, max_slide_mb: 4096 } });
  const session = () => json(201, { upload_id: "u".repeat(32), upload_url: SESSION_URL, chunk_bytes: MiB });

  /** A service that offers the bucket: it opens the session, then starts job1 from the upload. */
  function bucketService(extra: Record<string, () => Response> = {}) {
    return slideService([], { "GET /": offering("bucket"), "POST /slides/uploads": session, "POST /slides": () => json(202, job()), ...extra });
  }

  function sent(fetchMock: ReturnType<typeof vi.fn>, key: string) {
    const call = fetchMock.mock.calls.find(([url, init]) => `${(init as RequestInit | undefined)?.method ?? "GET"} ${String(url)}` === key);
    if (!call) return null;
    const init = call[1] as RequestInit;
    return { body: JSON.parse(String(init.body)), contentType: new Headers(init.headers).get("Content-Type") };
  }

  async function pickLargeAndSubmit(user: ReturnType<typeof userEvent.setup>, file: File) {
    await screen.findByText(/Service ready/);
    await user.upload(screen.getByLabelText(/choose a slide/i), file);
    await user.type(screen.getByLabelText(/question/i), "Is there a tumour?");
    await user.click(screen.getByRole("button", { name: "Screen slide" }));
  }

  it("sends the slide's bytes to storage in chunks, showing MB sent, then starts the job by its upload id", async () => {
    let release!: () => void;
    const bucket = fakeBucket(new FakeResumableSession(SESSION_URL)).on(2, pausesUntil(new Promise((resolve) => (release = resolve))));
    const fetchMock = bucketService();
    const user = userEvent.setup();
    const file = bigSlide();
    render(<SlidePage pollMs={5} />);
    await pickLargeAndSubmit(user, file);

    expect(await screen.findByText("1.5 MB of 2.5 MB sent")).toBeVisible(); // the first chunk, and half the second
    expect(screen.getByRole("progressbar", { name: "Upload" })).toHaveAttribute("aria-valuenow", "60");
    expect(screen.getByText("The slide goes straight to storage, then the service finds its tissue.")).toBeVisible();
    expect(sent(fetchMock, "POST /slides/uploads")).toEqual({ body: { filename: "large.tiff", size: file.size }, contentType: "application/json" });
    expect(sent(fetchMock, "POST /slides")).toBeNull(); // not before storage holds every byte

    release();
    expect(await screen.findByRole("region", { name: "Slide heatmap" })).toBeVisible();
    expect(sent(fetchMock, "POST /slides")).toEqual({ body: { upload_id: "u".repeat(32), question: "Is there a tumour?" }, contentType: "application/json" });
    expect(await bucket.compareWith(file)).toBe("identical");
    expect(bucket.log.map((line) => line.split(" → ")[0])).toEqual([
      `PUT bytes 0-${MiB - 1}/${file.size}`,
      `PUT bytes ${MiB}-${2 * MiB - 1}/${file.size}`,
      `PUT bytes ${2 * MiB}-${file.size - 1}/${file.size}`,
    ]);
  });

  it("says so when the connection drops, and resumes from what storage holds", async () => {
    let answerStatus!: () => void;
    let finishChunk!: () => void;
    const bucket = fakeBucket(new FakeResumableSession(SESSION_URL))
      .on(2, dropsAfter(MiB / 4))
      .on(3, pausesUntil(new Promise((resolve) => (answerStatus = resolve)))) // the status query
      .on(4, pausesUntil(new Promise((resolve) => (finishChunk = resolve)))); // the chunk after it
    bucketService();
    const user = userEvent.setup();
    const file = bigSlide();
    render(<SlidePage pollMs={5} retryDelaysMs={[0]} />);
    await pickLargeAndSubmit(user, file);

    expect(await screen.findByText("The connection dropped. Resuming where storage left off…")).toBeVisible();
    answerStatus();
    expect(await screen.findByText("The slide goes straight to storage, then the service finds its tissue.")).toBeVisible();
    finishChunk();
    expect(await screen.findByRole("region", { name: "Slide heatmap" })).toBeVisible();
    expect(bucket.log[2]).toBe(`PUT bytes */${file.size} → 308 bytes=0-${MiB + MiB / 4 - 1}`);
    expect(await bucket.compareWith(file)).toBe("identical");
  });

  it("stops after the retries with a message, and starts no job", async () => {
    const bucket = fakeBucket(new FakeResumableSession(SESSION_URL)).onEveryFrom(1, answers(503));
    const fetchMock = bucketService();
    const user = userEvent.setup();
    render(<SlidePage pollMs={5} retryDelaysMs={[0, 0]} />);
    await pickLargeAndSubmit(user, bigSlide());

    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Upload interrupted");
    expect(alert).toHaveTextContent("The connection to storage kept failing (3 tries)");
    expect(bucket.log).toHaveLength(3);
    expect(sent(fetchMock, "POST /slides")).toBeNull();
    expect(screen.getByRole("button", { name: "Screen slide" })).toBeEnabled();
  });

  it("cancels: aborts the chunk on its way and ends the storage session with DELETE", async () => {
    const bucket = fakeBucket(new FakeResumableSession(SESSION_URL)).on(2, hangs);
    const fetchMock = bucketService();
    const user = userEvent.setup();
    render(<SlidePage pollMs={5} />);
    await pickLargeAndSubmit(user, bigSlide());
    await screen.findByText("1.5 MB of 2.5 MB sent");

    await user.click(screen.getByRole("button", { name: "Cancel" }));

    expect(await screen.findByText("The upload was cancelled. Nothing was kept.")).toBeVisible();
    await waitFor(() => expect(bucket.cancelled).toBe(true));
    expect(bucket.log.slice(1)).toEqual([`PUT bytes ${MiB}-${2 * MiB - 1}/${2.5 * MiB} → hanging`, "PUT aborted", "DELETE → 499"]);
    expect(sent(fetchMock, "POST /slides")).toBeNull();
    expect(fetchMock.mock.calls.some(([, init]) => (init as RequestInit | undefined)?.method === "DELETE")).toBe(false);
  });

  it("explains a slide the service will not take before any byte goes to storage", async () => {
    const bucket = fakeBucket(new FakeResumableSession(SESSION_URL));
    bucketService({ "POST /slides/uploads": () => json(413, { error: "too_large", detail: "Slides up to 4096 MB are accepted.", request_id: "req-7" }) });
    const user = userEvent.setup();
    render(<SlidePage pollMs={5} />);
    await pickLargeAndSubmit(user, bigSlide());

    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Slide too large");
    expect(alert).toHaveTextContent("Slides up to 4096 MB are accepted.");
    expect(alert).toHaveTextContent("Reference: req-7");
    expect(bucket.log).toEqual([]);
  });

  it("asks the service again at submit when its health check failed while the model loaded", async () => {
    const bucket = fakeBucket(new FakeResumableSession(SESSION_URL));
    let asked = 0;
    const loading = () => json(503, { error: "model_not_ready", detail: "The model is still loading.", request_id: "req-1" });
    const fetchMock = bucketService({ "GET /": () => (++asked === 1 ? loading() : offering("bucket")()) });
    const user = userEvent.setup();
    render(<SlidePage pollMs={5} />);
    await screen.findByText("Model still loading");
    await user.upload(screen.getByLabelText(/choose a slide/i), bigSlide());
    await user.click(screen.getByRole("button", { name: "Screen slide" }));

    expect(await screen.findByRole("region", { name: "Slide heatmap" })).toBeVisible();
    expect(asked).toBe(2);
    expect(sent(fetchMock, "POST /slides/uploads")).not.toBeNull();
    expect(bucket.complete).toBe(true);
  });

  it("uploads as a form to the service, as before, when the service says \"form\"", async () => {
    const Xhr = fakeXhr();
    const fetchMock = slideService([], { "GET /": offering("form") });
    const user = userEvent.setup();
    render(<SlidePage pollMs={5} />);
    await pickLargeAndSubmit(user, bigSlide());

    const upload = Xhr.sent[0]!;
    expect(upload.method).toBe("POST");
    expect(upload.url).toBe("/slides");
    expect(((upload.body as FormData).get("slide_file") as File).name).toBe("large.tiff");
    act(() => upload.progress(100, 400));
    expect(screen.getByRole("progressbar", { name: "Upload" })).toHaveAttribute("aria-valuenow", "25");
    expect(screen.getByText("The slide is sent to the service, then its tissue is found.")).toBeVisible();
    act(() => upload.respond(202, job()));
    expect(await screen.findByRole("region", { name: "Slide heatmap" })).toBeVisible();
    expect(fetchMock.mock.calls.some(([url]) => String(url).endsWith("/slides/uploads"))).toBe(false);
  });
});

// The page's direct-to-bucket upload in a real browser: Debian chromium, the built page
// (frontend/dist), the REAL service on the demo model with its slide store in a Cloud Storage
// bucket on the emulator (fake-gcs-server, `python -m healer.tools.storage_emulator`), scoring
// split across two local worker processes. A real-tissue slide far past Cloud Run's 32 MiB request
// cap goes from the page straight to the bucket in chunks, then to a heatmap.
// Run `npm run build` first; `npm run e2e` runs this after upload.e2e.mjs.
//
// The emulator and the service each start in a process group of their own; `after` sends the
// group SIGTERM, waits up to 10 s for the leader, then SIGKILLs whatever of the group is left
// (the service's worker processes, the emulator's fake-gcs-server binary).
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { artifacts, chromiumPath, freePort, python, repo, waitForHealth } from "./support.mjs";

const BUCKET = "healer-e2e";
const SCORE_TIMEOUT_MS = 300_000; // ~100 MB through the page, then tissue tiles on two CPU workers

let emulator;
let emulatorUrl;
let server;
let browser;
let base;
let largeSlide;
const temp = mkdtempSync(join(tmpdir(), "healer-e2e-bucket-"));

/** Starts `args` in a process group of its own, so `stop` reaches its children too. */
function startGroup(args, env) {
  const child = spawn(python, args, { cwd: repo, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"], detached: true });
  child.log = "";
  child.stdout.on("data", (chunk) => (child.log += chunk));
  child.stderr.on("data", (chunk) => (child.log += chunk));
  return child;
}

async function stop(child) {
  if (!child?.pid) return;
  const signal = (name) => {
    try {
      process.kill(-child.pid, name);
    } catch {
      // the group is gone already
    }
  };
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((ok) => child.once("exit", ok));
    signal("SIGTERM");
    const timer = setTimeout(() => signal("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }
  signal("SIGKILL"); // anything of the group that outlived its leader
}

/** The emulator prints `ready URL` once its bucket exists. */
function emulatorReady(child, timeoutMs) {
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`the emulator did not say ready within ${timeoutMs / 1000} s:\n${child.log}`)), timeoutMs);
    const look = () => {
      const ready = child.log.match(/^ready (\S+)$/m);
      if (ready) {
        clearTimeout(timer);
        ok(ready[1]);
      }
    };
    child.stdout.on("data", look);
    child.once("exit", (code) => {
      clearTimeout(timer);
      fail(new Error(`the emulator exited (${code}):\n${child.log}`));
    });
  });
}

/** "107.1 MB", as the page writes sizes (src/lib/format.ts). */
const megabytes = (bytes) => `${(bytes / (1024 * 1024)).toFixed(1)} MB`;

before(async () => {
  assert.ok(existsSync(join(repo, "frontend", "dist", "index.html")), "frontend/dist is missing: run `npm run build` first");
  assert.ok(existsSync(chromiumPath), `${chromiumPath} is missing: apt-get install -y chromium`);
  mkdirSync(artifacts, { recursive: true });

  const modelDir = join(temp, "demo-model");
  execFileSync(python, ["download.py", "--demo"], { cwd: repo, env: { ...process.env, MODEL_DIR: modelDir }, stdio: "pipe" });
  largeSlide = join(temp, "large.tiff");
  execFileSync(python, ["-m", "tests.slide_files", largeSlide], { cwd: repo, stdio: "pipe" });
  assert.ok(statSync(largeSlide).size > 64 * 1024 * 1024, "the large slide should be far past Cloud Run's 32 MiB cap");

  emulator = startGroup(["-m", "healer.tools.storage_emulator", "--port", String(await freePort()), "--bucket", BUCKET], { PYTHONUNBUFFERED: "1" });
  emulatorUrl = await emulatorReady(emulator, 60_000);

  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = startGroup(["main.py"], {
    MODEL_DIR: modelDir,
    QUANTIZATION: "none",
    PORT: String(port),
    HOST: "127.0.0.1",
    SLIDE_STORE: `gs://${BUCKET}/slides`,
    STORAGE_EMULATOR_HOST: emulatorUrl,
    SLIDE_RUNNER: "processes",
    SLIDE_WORKERS: "2",
  });
  const health = await waitForHealth(`${base}/`, 180_000, server, () => server.log);
  assert.equal(health.model.demo, true, "the e2e service should run the demo model");
  assert.equal(health.slides?.upload, "bucket", "a gs:// store should offer uploads straight to the bucket");

  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  await stop(server);
  await stop(emulator);
  rmSync(temp, { recursive: true, force: true });
});

test("a slide far past 32 MiB goes from the page straight to the bucket, then to a heatmap scored by worker processes", async () => {
  const size = statSync(largeSlide).size;
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const pageErrors = [];
  const requests = [];
  const browserSaid = []; // console errors (a CSP refusal is only told there) and failed requests, for a failure's message
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  page.on("console", (message) => message.type() === "error" && browserSaid.push(`console: ${message.text()}`));
  page.on("requestfailed", (request) => browserSaid.push(`failed: ${request.method()} ${request.url().split("?")[0]} (${request.failure()?.errorText})`));
  page.on("request", (request) => requests.push(request));
  // Every upload percentage and byte count the page shows, however briefly.
  await page.addInitScript(() => {
    window.uploadShown = { percents: [], texts: [] };
    new MutationObserver(() => {
      const bar = document.querySelector('[role="progressbar"][aria-label="Upload"]');
      if (bar) window.uploadShown.percents.push(Number(bar.getAttribute("aria-valuenow")));
      for (const line of document.querySelectorAll(".progress p")) {
        if (/ MB sent$/.test(line.textContent)) window.uploadShown.texts.push(line.textContent);
      }
    }).observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
  });

  try {
    await page.goto(`${base}/app/#/slides`);
    await page.getByText(/Service ready/).waitFor();
    await page.getByLabel("Choose a slide").setInputFiles(largeSlide);
    const opened = page.waitForResponse((response) => response.url() === `${base}/slides/uploads` && response.request().method() === "POST");
    const tilesAnswer = page.waitForResponse((response) => /\/slides\/[0-9a-f]{32}\/tiles$/.test(response.url()), { timeout: SCORE_TIMEOUT_MS });
    tilesAnswer.catch(() => undefined); // awaited below; if it times out first, the failure still goes through `catch`
    await page.getByRole("button", { name: "Screen slide" }).click();

    const openAnswer = await opened;
    assert.equal(openAnswer.status(), 201, await openAnswer.text());
    const session = await openAnswer.json();
    assert.ok(session.upload_url.startsWith(emulatorUrl), `the session lives on the emulator: ${session.upload_url}`);
    assert.equal(session.chunk_bytes % (256 * 1024), 0, "chunks are a multiple of 256 KiB");

    // The heatmap, or the page's own error: an upload that cannot go through ends in seconds, not at the timeout.
    const result = page.getByRole("region", { name: "Slide heatmap" });
    const alert = page.getByRole("alert");
    await Promise.race([
      result.waitFor({ timeout: SCORE_TIMEOUT_MS }),
      alert.waitFor({ timeout: SCORE_TIMEOUT_MS }).then(async () => {
        throw new Error(`the page reported an error instead of the heatmap: ${await alert.innerText()}`);
      }),
    ]);
    await result.getByRole("img", { name: /Heatmap of P\(yes\) per tile over large\.tiff/ }).waitFor();
    await page.waitForFunction(() => document.querySelector(".heatmap-image")?.naturalWidth > 0);

    // The bytes went to the emulator, chunk after chunk, covering the file exactly once…
    const puts = requests.filter((request) => request.method() === "PUT" && request.url().startsWith(emulatorUrl));
    assert.ok(puts.length >= Math.ceil(size / session.chunk_bytes), `${puts.length} PUTs for ${size} bytes`);
    let next = 0;
    for (const put of puts) {
      const range = (await put.allHeaders())["content-range"];
      const match = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(range ?? "");
      assert.ok(match, `a chunk's Content-Range: ${range}`);
      assert.deepEqual([Number(match[1]), Number(match[3])], [next, size], range);
      next = Number(match[2]) + 1;
    }
    assert.equal(next, size, "the chunks end at the file's last byte");
    // The service read those bytes as the slide they are (OpenSlide found its full size), and
    // once scored the slide is not kept: only the job's results stay in the bucket.
    const scoredId = /\/slides\/([0-9a-f]{32})\/tiles$/.exec((await tilesAnswer).url())[1];
    const scored = await (await fetch(`${base}/slides/${scoredId}`)).json();
    assert.deepEqual([scored.slide.width, scored.slide.height], [4440, 5934]);
    const listing = await (await fetch(`${emulatorUrl}/storage/v1/b/${BUCKET}/o?prefix=slides/`)).json();
    const names = (listing.items ?? []).map((item) => item.name);
    assert.ok(names.some((name) => name.endsWith("/heatmap.png")), JSON.stringify(names));
    assert.ok(!names.some((name) => /\/slide(\.\w+)?$/.test(name)), `the slide was deleted once scored: ${JSON.stringify(names)}`);

    // …and never through the service: its one POST /slides names the upload, as JSON.
    const service = requests.filter((request) => request.url().startsWith(base));
    const slidePosts = service.filter((request) => request.method() === "POST" && request.url() === `${base}/slides`);
    assert.equal(slidePosts.length, 1);
    assert.equal((await slidePosts[0].allHeaders())["content-type"], "application/json");
    assert.deepEqual(JSON.parse(slidePosts[0].postData()), { upload_id: session.upload_id, question: null });
    for (const request of service) {
      assert.ok((request.postDataBuffer()?.length ?? 0) < 64 * 1024, `${request.method()} ${request.url()} carried a body of ${request.postDataBuffer()?.length} bytes`);
    }

    // The page showed the upload moving, in MB sent of the slide's size.
    const shown = await page.evaluate(() => window.uploadShown);
    assert.ok(shown.percents.some((percent) => percent > 0 && percent < 100), `upload percentages shown: ${[...new Set(shown.percents)].join(", ")}`);
    const total = megabytes(size);
    const partway = shown.texts.filter((text) => text.endsWith(` of ${total} sent`) && !text.startsWith(`${total} of`) && !text.startsWith("0 B of"));
    assert.ok(partway.length > 0, `MB sent shown part-way: ${[...new Set(shown.texts)].join(" | ")}`);

    // The heatmap's summary counts the tiles the service scored.
    const tiles = await (await tilesAnswer).json();
    assert.ok(tiles.tiles.length > 0, "tissue tiles were scored");
    const jobId = /\/slides\/([0-9a-f]{32})\/tiles$/.exec((await tilesAnswer).url())[1];
    const job = await (await fetch(`${base}/slides/${jobId}`)).json();
    assert.equal(job.status, "done");
    assert.equal(job.summary.tiles_scored, tiles.tiles.length);
    const answered = job.summary.tiles_scored - job.summary.tiles_unanswered;
    const summary = await result.getByLabel("Slide summary").innerText();
    assert.match(summary, new RegExp(`\\d+ of ${answered} \\(\\d+% of tissue\\)`), summary);
    assert.ok(await page.getByRole("note", { name: "Disclaimer" }).isVisible(), "disclaimer visible with the heatmap");
    assert.deepEqual(pageErrors, []);
    await page.screenshot({ path: join(artifacts, "slide-bucket-heatmap.png"), fullPage: true });
  } catch (error) {
    await page.screenshot({ path: join(artifacts, "slide-bucket-failure.png"), fullPage: true }).catch(() => undefined);
    error.message += `\n--- the browser said ---\n${[...new Set(browserSaid)].join("\n")}`;
    error.message += `\n--- service log (last 4000 characters) ---\n${server.log.slice(-4000)}`;
    throw error;
  } finally {
    await page.close();
  }
});

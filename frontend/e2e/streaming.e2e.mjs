// The streamed answer in a real browser: Debian chromium, the built page (frontend/dist), the
// REAL service with its slow fake engine (tests/slow_server.py: the answer at once, then the text
// a word at a time over FAKE_DELAY_S), so what the page shows mid-stream can be watched.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { artifacts, chromiumPath, freePort, python, repo, waitForHealth } from "./support.mjs";

const DELAY_S = 4; // the fake engine's text: 10 words, one every 0.4 s
const RAW = "Yes. Irregular glands with cribriform architecture invade the stroma."; // healer/model/fake.py
const EXPLANATION = "Irregular glands with cribriform architecture invade the stroma.";

let server;
let serverLog = "";
let browser;
let base;
const temp = mkdtempSync(join(tmpdir(), "healer-e2e-stream-"));
const image = join(temp, "tile.png");

before(async () => {
  assert.ok(existsSync(join(repo, "frontend", "dist", "index.html")), "frontend/dist is missing: run `npm run build` first");
  assert.ok(existsSync(chromiumPath), `${chromiumPath} is missing: apt-get install -y chromium`);
  mkdirSync(artifacts, { recursive: true });
  execFileSync(python, ["-c", "import sys; from PIL import Image; Image.new('RGB', (64, 64), (200, 120, 180)).save(sys.argv[1])", image]);

  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = spawn(python, ["-m", "tests.slow_server"], {
    cwd: repo,
    env: { ...process.env, FAKE_DELAY_S: String(DELAY_S), CACHE_SIZE: "0", MODEL_DIR: temp, PORT: String(port), HOST: "127.0.0.1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  server.stdout.on("data", (chunk) => (serverLog += chunk));
  server.stderr.on("data", (chunk) => (serverLog += chunk));
  await waitForHealth(`${base}/`, 60_000, server, () => serverLog);

  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  if (server && server.exitCode === null) {
    const exited = new Promise((ok) => server.once("exit", ok));
    server.kill("SIGTERM");
    const timer = setTimeout(() => server.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }
  rmSync(temp, { recursive: true, force: true });
});

/** Records, in the page, every text a live region takes: what a screen reader would be told. */
function recordAnnouncements() {
  window.__announced = [];
  const live = '[aria-live]:not([aria-live="off"]), [role="status"], [role="alert"], [role="log"]';
  const last = new Map();
  new MutationObserver((mutations) => {
    for (const mutation of mutations) {
      const node = mutation.target.nodeType === Node.ELEMENT_NODE ? mutation.target : mutation.target.parentElement;
      const region = node?.closest(live);
      const text = region?.textContent?.trim();
      if (region && text && last.get(region) !== text) {
        last.set(region, text);
        window.__announced.push(text);
      }
    }
  }).observe(document.body, { childList: true, characterData: true, subtree: true });
}

async function openPage() {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  await page.goto(`${base}/app/`);
  await page.getByText(/Service ready/).waitFor();
  await page.evaluate(recordAnnouncements);
  await page.getByLabel("Choose an H&E image").setInputFiles(image);
  return { page, pageErrors };
}

test("the badge and P(yes) show while the explanation is still being written; the screen reader hears the answer once", async () => {
  const { page, pageErrors } = await openPage();
  await page.getByRole("button", { name: "Analyse image" }).click();

  const result = page.getByRole("region", { name: /Answer/ });
  await result.locator(".badge").waitFor({ timeout: 30_000 });
  const explanation = result.locator(".explanation");
  const atAnswer = await explanation.innerText();
  assert.equal((await result.locator(".badge").innerText()).trim(), "YES");
  assert.equal(await result.getByRole("meter").getAttribute("aria-valuenow"), "93");
  assert.ok(!atAnswer.includes("stroma"), `the explanation was already whole when the badge appeared: ${atAnswer}`);
  await page.screenshot({ path: join(artifacts, "streaming-mid-answer.png"), fullPage: true });

  // Watch the text grow until the final Prediction replaces it.
  const seen = new Set([atAnswer]);
  const deadline = Date.now() + DELAY_S * 1000 + 20_000;
  while (!(await result.getByText(/^model .* · total /).isVisible())) {
    assert.ok(Date.now() < deadline, `no done event (seen: ${[...seen].join(" | ")})`);
    seen.add(await explanation.innerText());
    await page.waitForTimeout(100);
  }
  const partial = [...seen].filter((text) => text.startsWith("Yes.") && !text.includes("stroma"));
  assert.ok(partial.length >= 3, `the explanation should grow word by word, seen: ${[...seen].join(" | ")}`);
  assert.equal((await explanation.innerText()).trim(), EXPLANATION, "the done body's explanation replaces the raw text");
  assert.equal(await page.getByRole("list", { name: "Results" }).getByRole("listitem").count(), 1);

  const announced = await page.evaluate(() => window.__announced);
  const answers = announced.filter((text) => text.startsWith("Answer:"));
  assert.deepEqual(answers, ["Answer: YES. The model reports features suggestive of colorectal cancer. Probability of yes 0.93."],
    `announced: ${JSON.stringify(announced).slice(0, 800)}`);
  assert.ok(!announced.some((text) => /Irregular|stroma/.test(text)), `the growing text was announced: ${JSON.stringify(announced).slice(0, 800)}`);
  assert.deepEqual(pageErrors, []);
  await page.close();
});

test("Stop while the explanation is written aborts the request and keeps the answer", async () => {
  const { page, pageErrors } = await openPage();
  const aborted = page.waitForEvent("requestfailed", { predicate: (request) => request.url().endsWith("/predict"), timeout: 30_000 });
  await page.getByRole("button", { name: "Analyse image" }).click();
  const result = page.getByRole("region", { name: /Answer/ });
  await result.getByText(/^Yes\. Irregular/).waitFor({ timeout: 30_000 });
  await result.getByRole("button", { name: "Stop explanation" }).click();

  assert.match((await aborted).failure()?.errorText ?? "", /ABORTED/);
  await result.getByText(/stopped before the model finished/).waitFor();
  assert.equal((await result.locator(".badge").innerText()).trim(), "YES");
  const stoppedAt = await result.locator(".explanation").innerText();
  await page.waitForTimeout(1000); // no more text arrives once stopped
  assert.equal(await result.locator(".explanation").innerText(), stoppedAt);
  assert.ok(!stoppedAt.includes(RAW), `stopped after the whole text: ${stoppedAt}`);
  assert.equal(await page.getByRole("list", { name: "Results" }).getByRole("listitem").count(), 1);
  assert.ok(await page.getByRole("button", { name: "Analyse image" }).isEnabled());
  assert.deepEqual(pageErrors, []);
  await page.close();
});

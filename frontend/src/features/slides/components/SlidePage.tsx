import { useEffect, useRef, useState, type FormEvent, type ReactNode } from "react";
import { ApiError, type SlideJob, type SlideTiles } from "../../../api/client";
import type { Problem } from "../../../api/errors";
import { DEFAULT_QUESTION } from "../../../api/prompts.gen";
import { getHealth, useServiceHealth } from "../../../api/health";
import { ErrorAlert } from "../../../components/ErrorAlert";
import { PageFrame } from "../../../components/PageFrame";
import { formatBytes } from "../../../lib/format";
import { FINISHED, cancelSlide, getSlide, getTiles, sendSlideToBucket, uploadRoute, uploadSlide, type SlideFields } from "../api/slides";
import { SLIDE_TYPES, describeSlideError } from "../messages";
import { SlideProgress, type UploadState } from "./SlideProgress";
import { SlideResult } from "./SlideResult";

const ACCEPT = ".svs,.tif,.tiff,.ndpi,.scn,.bif,.svslide,.vms";

type Run =
  | { state: "idle" }
  | { state: "working"; fileName: string; upload: UploadState; job: SlideJob | null }
  | { state: "done"; fileName: string; job: SlideJob; tiles: SlideTiles }
  | { state: "failed"; problem: Problem; cancelled: boolean };

type Props = {
  nav?: ReactNode;
  pollMs?: number;
  /** Waits between tries of a chunk to the bucket (tests shorten them); resumableUpload's by default. */
  retryDelaysMs?: readonly number[];
};

/** Slide mode: upload a whole slide (straight to the service's bucket when it offers one, else as a
 *  form to the service), follow tiles scored / total, then the heatmap. */
export function SlidePage({ nav, pollMs = 1000, retryDelaysMs }: Props) {
  const { health, problem: healthProblem } = useServiceHealth();
  const [file, setFile] = useState<File | null>(null);
  const [question, setQuestion] = useState("");
  const [run, setRun] = useState<Run>({ state: "idle" });
  const controller = useRef<AbortController | null>(null);
  const jobId = useRef<string | null>(null);
  const outcome = useRef<HTMLElement & HTMLDivElement>(null);

  useEffect(() => () => controller.current?.abort(), []);

  useEffect(() => {
    if (run.state === "done" || run.state === "failed") outcome.current?.focus();
  }, [run.state]);

  async function submit(event: FormEvent) {
    event.preventDefault();
    if (!file || run.state === "working") return;
    const abort = new AbortController();
    controller.current = abort;
    jobId.current = null;
    const fileName = file.name;
    const total = file.size;
    const fields: SlideFields = { slide_file: file, question: question.trim() || null };
    const track = (change: Partial<UploadState>) =>
      setRun((now) => (now.state === "working" ? { ...now, upload: { ...now.upload, ...change } } : now));
    setRun({ state: "working", fileName, upload: { route: "form", sent: 0, total, resuming: false }, job: null });
    try {
      // The health check may not have answered yet (or failed while the model loaded): ask again.
      const route = uploadRoute(health ?? (await getHealth(abort.signal).catch(() => null)));
      track({ route });
      let job =
        route === "bucket"
          ? await sendSlideToBucket(fields, {
              signal: abort.signal,
              retryDelaysMs,
              onProgress: (sent) => track({ sent, resuming: false }),
              onRetry: () => track({ resuming: true }),
            })
          : await uploadSlide(fields, (fraction) => track({ sent: fraction * total }), abort.signal);
      jobId.current = job.id;
      const uploaded: UploadState = { route, sent: total, total, resuming: false };
      while (!FINISHED.has(job.status)) {
        setRun({ state: "working", fileName, upload: uploaded, job });
        await sleep(pollMs, abort.signal);
        job = await getSlide(job.id, abort.signal);
      }
      if (job.status === "done") {
        const tiles = await getTiles(job, abort.signal);
        setRun({ state: "done", fileName, job, tiles });
      } else if (job.status === "cancelled") {
        setRun({ state: "failed", problem: { title: "Cancelled", body: "The slide was cancelled before every tile was scored.", requestId: null }, cancelled: true });
      } else {
        setRun({ state: "failed", problem: { title: "Slide not scored", body: job.error ?? "The service could not score this slide.", requestId: null }, cancelled: false });
      }
    } catch (error) {
      const cancelled = error instanceof ApiError && error.kind === "aborted";
      const problem = cancelled && jobId.current
        ? { title: "Cancelled", body: "The slide was cancelled; the service stopped scoring it.", requestId: null }
        : describeSlideError(error);
      setRun({ state: "failed", problem, cancelled });
    } finally {
      if (controller.current === abort) controller.current = null;
    }
  }

  function cancel() {
    const id = jobId.current;
    controller.current?.abort();
    if (id) cancelSlide(id).catch(() => undefined); // best effort: the job may have just finished
  }

  const working = run.state === "working";
  const demo = health?.model.demo || (run.state === "done" && run.job.model.demo);

  return (
    <PageFrame nav={nav} health={health} problem={healthProblem} demo={Boolean(demo)} demoWhat="heatmaps">
      <main className="container layout">
        <form className="panel form" onSubmit={submit} aria-labelledby="slide-form-title">
          <h2 id="slide-form-title" className="panel-title">
            Whole slide
          </h2>
          <div className="dropzone">
            <input
              id="slide-file"
              className="visually-hidden"
              type="file"
              accept={ACCEPT}
              disabled={working}
              aria-describedby="slide-file-hint"
              onChange={(event) => {
                const picked = event.target.files?.[0];
                if (picked) setFile(picked);
                event.target.value = "";
              }}
            />
            <label htmlFor="slide-file" className="dropzone-label">
              <span aria-hidden="true" className="dropzone-icon">⇪</span>
              <span className="dropzone-title">{file ? "Choose another slide" : "Choose a slide"}</span>
            </label>
            {file && (
              <p className="picked-name">
                {file.name} <span className="muted">({formatBytes(file.size)})</span>
              </p>
            )}
            <p id="slide-file-hint" className="muted small">
              {SLIDE_TYPES}. Tissue is found and cut into tiles; each tile is asked the question.
            </p>
          </div>
          <div className="field">
            <label htmlFor="slide-question" className="field-label">
              Question <span className="muted">(optional)</span>
            </label>
            <textarea
              id="slide-question"
              rows={3}
              maxLength={500}
              placeholder={DEFAULT_QUESTION}
              value={question}
              disabled={working}
              onChange={(event) => setQuestion(event.target.value)}
            />
          </div>
          <button type="submit" className="button button-primary" disabled={!file || working}>
            {working ? "Screening…" : "Screen slide"}
          </button>
        </form>

        <div className="outcome" aria-live="polite">
          {run.state === "idle" && (
            <section className="panel empty">
              <h2 className="panel-title">Heatmap</h2>
              <p className="muted">Choose a slide and select “Screen slide”. Progress and then the heatmap appear here.</p>
            </section>
          )}
          {run.state === "working" && (
            <SlideProgress fileName={run.fileName} upload={run.upload} job={run.job} onCancel={cancel} />
          )}
          {run.state === "failed" && (
            <ErrorAlert ref={outcome} problem={run.problem} tone={run.cancelled ? "notice" : "error"} />
          )}
        </div>
        {run.state === "done" && (
          <div className="slide-outcome">
            <SlideResult ref={outcome} job={run.job} tiles={run.tiles} fileName={run.fileName} />
          </div>
        )}
      </main>
    </PageFrame>
  );
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new ApiError({ kind: "aborted" }));
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(new ApiError({ kind: "aborted" }));
    }, { once: true });
  });
}

import { useEffect, useRef, useState, type FormEvent, type ReactNode } from "react";
import { ApiError, type Prediction } from "../../../api/client";
import { describeError, type Problem } from "../../../api/errors";
import { DEFAULT_QUESTION } from "../../../api/prompts.gen";
import { useServiceHealth } from "../../../api/health";
import { ErrorAlert } from "../../../components/ErrorAlert";
import { PageFrame } from "../../../components/PageFrame";
import { predict } from "../api/screening";
import { canPreview } from "../files";
import { HistoryList, type HistoryEntry } from "./HistoryList";
import { ImagePicker } from "./ImagePicker";
import { ProgressPanel } from "./ProgressPanel";
import { ResultCard } from "./ResultCard";

const MAX_QUESTION = 500; // the service's default MAX_QUESTION_CHARS; it has the last word (422)

type Run =
  | { state: "idle" }
  | { state: "running"; startedAt: number; fileName: string }
  | { state: "done"; prediction: Prediction; fileName: string; explainAsked: boolean }
  | { state: "failed"; problem: Problem; cancelled: boolean };

export function ScreeningPage({ nav }: { nav?: ReactNode } = {}) {
  const { health, problem: healthProblem } = useServiceHealth();
  const [file, setFile] = useState<File | null>(null);
  const [previewUrl, setPreviewUrl] = useState<string | null>(null);
  const [question, setQuestion] = useState("");
  const [run, setRun] = useState<Run>({ state: "idle" });
  const [history, setHistory] = useState<HistoryEntry[]>([]);
  const controller = useRef<AbortController | null>(null);
  const outcome = useRef<HTMLElement & HTMLDivElement>(null);
  const submitButton = useRef<HTMLButtonElement>(null);
  const nextId = useRef(1);
  const ownedUrls = useRef(new Set<string>()); // every object URL alive, revoked on unmount

  useEffect(() => {
    const urls = ownedUrls.current;
    return () => {
      controller.current?.abort();
      urls.forEach((url) => URL.revokeObjectURL(url));
      urls.clear();
    };
  }, []);

  // Move focus to what just arrived: the answer, or the reason there is none.
  useEffect(() => {
    if (run.state === "done" || run.state === "failed") outcome.current?.focus();
  }, [run]);

  function objectUrl(picked: File): string | null {
    if (!canPreview(picked)) return null;
    const url = URL.createObjectURL(picked);
    ownedUrls.current.add(url);
    return url;
  }

  function revoke(urls: (string | null)[]) {
    for (const url of urls) {
      if (url && ownedUrls.current.delete(url)) URL.revokeObjectURL(url);
    }
  }

  function pick(picked: File) {
    revoke([previewUrl]);
    setFile(picked);
    setPreviewUrl(objectUrl(picked));
  }

  async function submit(event: FormEvent) {
    event.preventDefault();
    if (!file || run.state === "running") return;
    const abort = new AbortController();
    controller.current = abort;
    setRun({ state: "running", startedAt: Date.now(), fileName: file.name });
    try {
      const fields = { image_file: file, question: question.trim() || null, explain: true };
      const prediction = await predict(fields, abort.signal);
      setRun({ state: "done", prediction, fileName: file.name, explainAsked: fields.explain });
      const entry: HistoryEntry = {
        id: nextId.current++,
        fileName: file.name,
        thumbnailUrl: objectUrl(file),
        answer: prediction.answer,
        probability: prediction.probability,
        at: new Date(),
      };
      setHistory((entries) => [entry, ...entries]);
    } catch (error) {
      const cancelled = error instanceof ApiError && error.kind === "aborted";
      setRun({ state: "failed", problem: describeError(error), cancelled });
    } finally {
      if (controller.current === abort) controller.current = null;
    }
  }

  function clearHistory() {
    revoke(history.map((entry) => entry.thumbnailUrl));
    setHistory([]);
  }

  const demo = health?.model.demo || (run.state === "done" && run.prediction.model.demo);
  const running = run.state === "running";

  return (
    <PageFrame nav={nav} health={health} problem={healthProblem} demo={Boolean(demo)} demoWhat="answers">
      <main className="container layout">
        <form className="panel form" onSubmit={submit} aria-labelledby="form-title">
          <h2 id="form-title" className="panel-title">
            Image and question
          </h2>
          <ImagePicker file={file} previewUrl={previewUrl} disabled={running} onPick={pick} />
          <div className="field">
            <label htmlFor="question" className="field-label">
              Question <span className="muted">(optional)</span>
            </label>
            <textarea
              id="question"
              rows={3}
              maxLength={MAX_QUESTION}
              placeholder={DEFAULT_QUESTION}
              value={question}
              disabled={running}
              aria-describedby="question-hint"
              onChange={(event) => setQuestion(event.target.value)}
            />
            <p id="question-hint" className="muted small">
              Leave empty to ask the default question shown. {question.length}/{MAX_QUESTION}
            </p>
          </div>
          <button ref={submitButton} type="submit" className="button button-primary" disabled={!file || running}>
            {running ? "Analysing…" : "Analyse image"}
          </button>
        </form>

        <div className="outcome" aria-live="polite">
          {run.state === "idle" && (
            <section className="panel empty">
              <h2 className="panel-title">Result</h2>
              <p className="muted">Choose an image and select “Analyse image”. The answer appears here.</p>
            </section>
          )}
          {run.state === "running" && (
            <ProgressPanel
              startedAt={run.startedAt}
              fileName={run.fileName}
              onCancel={() => controller.current?.abort()}
            />
          )}
          {run.state === "done" && (
            <ResultCard ref={outcome} prediction={run.prediction} fileName={run.fileName} explainAsked={run.explainAsked} />
          )}
          {run.state === "failed" && (
            <ErrorAlert ref={outcome} problem={run.problem} tone={run.cancelled ? "notice" : "error"} />
          )}
        </div>

        <HistoryList entries={history} onClear={clearHistory} />
      </main>
    </PageFrame>
  );
}

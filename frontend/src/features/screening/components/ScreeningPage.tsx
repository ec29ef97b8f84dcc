import { useEffect, useRef, useState, type FormEvent, type ReactNode } from "react";
import { ApiError, type Prediction, type StreamedAnswer } from "../../../api/client";
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
import { ResultCard, spokenAnswer } from "./ResultCard";

const MAX_QUESTION = 500; // the service's default MAX_QUESTION_CHARS; it has the last word (422)

// A run streams: waiting (no answer yet) → answered (badge and P(yes) final, the explanation
// growing; `stopped` when the user stopped it) → done (the Prediction); or failed at any point.
type Run =
  | { state: "idle" }
  | { state: "waiting"; startedAt: number; fileName: string }
  | { state: "answered"; answer: StreamedAnswer; text: string; stopped: boolean; fileName: string; explainAsked: boolean }
  | { state: "done"; prediction: Prediction; fileName: string; explainAsked: boolean }
  | { state: "failed"; problem: Problem; cancelled: boolean };

/** What the page's one live region says: "Analysing", then the answer once (the same words from
 *  its `answer` event to its Prediction, so `done` changes nothing there). Errors announce
 *  themselves (role alert); the explanation as it grows is in no live region. */
function announcement(run: Run): string {
  if (run.state === "waiting") return `Analysing ${run.fileName}…`;
  if (run.state === "answered") return spokenAnswer(run.answer);
  if (run.state === "done") return spokenAnswer(run.prediction);
  return "";
}

export function ScreeningPage({ nav }: { nav?: ReactNode } = {}) {
  const { health, problem: healthProblem } = useServiceHealth();
  const [file, setFile] = useState<File | null>(null);
  const [previewUrl, setPreviewUrl] = useState<string | null>(null);
  const [question, setQuestion] = useState("");
  const [run, setRun] = useState<Run>({ state: "idle" });
  const [history, setHistory] = useState<HistoryEntry[]>([]);
  const controller = useRef<AbortController | null>(null);
  const outcome = useRef<HTMLDivElement>(null); // the error or cancel notice
  const explanation = useRef<HTMLParagraphElement>(null); // a stopped explanation
  const results = useRef<HTMLDivElement>(null);
  const submitButton = useRef<HTMLButtonElement>(null);
  const nextId = useRef(1);
  const ownedUrls = useRef(new Set<string>()); // every object URL alive, revoked on unmount

  const alive = useRef(true); // false once unmounted: a run stopped by leaving the page lists nothing
  useEffect(() => {
    const urls = ownedUrls.current;
    alive.current = true;
    return () => {
      alive.current = false;
      controller.current?.abort();
      urls.forEach((url) => URL.revokeObjectURL(url));
      urls.clear();
    };
  }, []);

  // Focus moves to the reason there is no answer, or to the explanation the user stopped. Not to
  // an answer: its card's title is the answer, which the live region has just said once.
  // Scrolled into view instead, for the narrow screen where it lands below the form.
  const arrived = run.state === "answered" && !run.stopped;
  const stopped = run.state === "answered" && run.stopped;
  useEffect(() => {
    if (run.state === "failed") outcome.current?.focus();
    if (stopped) explanation.current?.focus();
  }, [run.state, stopped]);
  useEffect(() => {
    if (arrived) results.current?.scrollIntoView?.({ block: "nearest" });
  }, [arrived]);

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

  function remember(fileName: string, picked: File, answer: Pick<StreamedAnswer, "answer" | "probability">) {
    if (!alive.current) return; // its object URL would outlive the cleanup that revokes them
    const entry: HistoryEntry = {
      id: nextId.current++,
      fileName,
      thumbnailUrl: objectUrl(picked),
      answer: answer.answer,
      probability: answer.probability,
      at: new Date(),
    };
    setHistory((entries) => [entry, ...entries]);
  }

  async function submit(event: FormEvent) {
    event.preventDefault();
    if (!file || running) return;
    const abort = new AbortController();
    controller.current = abort;
    const picked = file;
    const fileName = file.name;
    const fields = { image_file: file, question: question.trim() || null, explain: true };
    let answered: StreamedAnswer | null = null;
    setRun({ state: "waiting", startedAt: Date.now(), fileName });
    try {
      const prediction = await predict(
        fields,
        {
          onAnswer: (answer) => {
            answered = answer;
            setRun({ state: "answered", answer, text: "", stopped: false, fileName, explainAsked: fields.explain });
          },
          onText: (text) => setRun((now) => (now.state === "answered" ? { ...now, text: now.text + text } : now)),
        },
        abort.signal,
      );
      setRun({ state: "done", prediction, fileName, explainAsked: fields.explain });
      remember(fileName, picked, prediction);
    } catch (error) {
      const cancelled = error instanceof ApiError && error.kind === "aborted";
      if (cancelled && answered) {
        // Stopped while the explanation was written: the answer was final, so it stays (and is kept).
        setRun((now) => (now.state === "answered" ? { ...now, stopped: true } : now));
        remember(fileName, picked, answered);
      } else {
        setRun({ state: "failed", problem: describeError(error), cancelled });
      }
    } finally {
      if (controller.current === abort) controller.current = null;
    }
  }

  function clearHistory() {
    revoke(history.map((entry) => entry.thumbnailUrl));
    setHistory([]);
  }

  const demo = health?.model.demo || (run.state === "done" && run.prediction.model.demo);
  const running = run.state === "waiting" || (run.state === "answered" && !run.stopped);
  const cancel = () => controller.current?.abort();

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

        <div className="outcome" ref={results}>
          <p className="visually-hidden" role="status" aria-live="polite" aria-atomic="true">
            {announcement(run)}
          </p>
          {run.state === "idle" && (
            <section className="panel empty">
              <h2 className="panel-title">Result</h2>
              <p className="muted">Choose an image and select “Analyse image”. The answer appears here.</p>
            </section>
          )}
          {run.state === "waiting" && <ProgressPanel startedAt={run.startedAt} fileName={run.fileName} onCancel={cancel} />}
          {/* One slot for both, so the card the reader is on stays the same element when done lands. */}
          {run.state === "answered" ? (
            <ResultCard
              ref={explanation}
              answer={run.answer}
              writing={{ text: run.text, stopped: run.stopped, onStop: cancel }}
              fileName={run.fileName}
              explainAsked={run.explainAsked}
            />
          ) : run.state === "done" ? (
            <ResultCard prediction={run.prediction} fileName={run.fileName} explainAsked={run.explainAsked} />
          ) : null}
          {run.state === "failed" && (
            <ErrorAlert ref={outcome} problem={run.problem} tone={run.cancelled ? "notice" : "error"} />
          )}
        </div>

        <HistoryList entries={history} onClear={clearHistory} />
      </main>
    </PageFrame>
  );
}

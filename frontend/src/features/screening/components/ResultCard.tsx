import { forwardRef } from "react";
import type { Prediction, StreamedAnswer } from "../../../api/client";
import { BAND_HINT, TriageBand } from "../../../components/TriageBand";
import { formatMs } from "../../../lib/format";

const ANSWER_WORD = { yes: "YES", no: "NO", uncertain: "UNCERTAIN" } as const;
const QUANTIZATION: Record<string, string> = { int8: "int8", none: "bf16", "engine's own": "the engine's own precision" };

const ANSWER_HINT = {
  yes: "The model reports features suggestive of colorectal cancer",
  no: "The model reports no features of colorectal cancer",
  uncertain: "No clear yes or no from the model: review the image yourself",
} as const;

/** The answer in one sentence, as the page's live region says it (once, when it lands). */
export function spokenAnswer({ answer, probability, triage }: StreamedAnswer | Prediction): string {
  const band = triage ? ` Triage: ${triage}, ${BAND_HINT[triage]}.` : "";
  return `Answer: ${ANSWER_WORD[answer]}. ${ANSWER_HINT[answer]}. Probability of yes ${probability.toFixed(2)}.${band}`;
}

export function AnswerBadge({ answer }: { answer: Prediction["answer"] }) {
  return <span className={`badge badge-${answer}`}>{ANSWER_WORD[answer]}</span>;
}

export function ProbabilityBar({ probability }: { probability: number }) {
  const percent = Math.round(probability * 100);
  return (
    <div className="probability">
      <div className="probability-label">
        <span id="probability-label">Probability of “yes”</span>
        <strong className="probability-number">{probability.toFixed(2)}</strong>
      </div>
      <div
        className="probability-track"
        role="meter"
        aria-labelledby="probability-label"
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={percent}
        aria-valuetext={`${percent}%`}
      >
        <div className="probability-fill" style={{ width: `${percent}%` }} />
      </div>
      <div className="probability-scale muted small" aria-hidden="true">
        <span>0 · no</span>
        <span>1 · yes</span>
      </div>
    </div>
  );
}

/** How much of its probability the model put on answering yes or no at all, and why a low share
 * makes the answer "uncertain" whatever the yes/no ratio says. */
export function AnswerMass({ mass, minimum, answer }: { mass: number; minimum: number; answer: Prediction["answer"] }) {
  const percent = Math.round(mass * 100);
  const tooLittle = mass < minimum;
  return (
    <p className="answer-mass small">
      {mass === 0
        ? "The model did not say yes or no within its first words."
        : `The model put ${percent} % of its probability on answering yes or no at all.`}
      {tooLittle && answer === "uncertain"
        ? ` A yes or no needs at least ${Math.round(minimum * 100)} %, so the probability above is not an answer: refer for review.`
        : ""}
    </p>
  );
}

/** The explanation while the model writes it: its raw text so far (the answer word first). */
export type Writing = { text: string; stopped: boolean; onStop: () => void };

type Props = {
  fileName: string;
  /** Whether the request asked for an explanation: an empty one means "not asked" or "none given". */
  explainAsked: boolean;
} & (
  | { prediction: Prediction; answer?: never; writing?: never }
  /** Streamed: the answer is final, the explanation is still being written (or was stopped). */
  | { prediction?: never; answer: StreamedAnswer; writing: Writing }
);

/** The answer: the badge and P(yes) as soon as they are final, then the explanation. Nothing in it
 *  is a live region: the page announces the answer once (spokenAnswer), not the growing text.
 *  The ref is the explanation (tabIndex -1): focus goes there when the user stops it. */
export const ResultCard = forwardRef<HTMLParagraphElement, Props>(function ResultCard(
  { prediction, answer: streamed, writing, fileName, explainAsked },
  ref,
) {
  const shown = prediction ?? streamed;
  const { answer } = shown;
  return (
    <section className="panel result" aria-labelledby="result-title">
      <p className="eyebrow">Result · {fileName}</p>
      <h2 id="result-title" className="result-title">
        <span className="visually-hidden">Answer: </span>
        <AnswerBadge answer={answer} />
        <span className="result-hint">{ANSWER_HINT[answer]}</span>
      </h2>
      {shown.triage && (
        <p className="triage-line" aria-label="Triage">
          Triage: <TriageBand band={shown.triage} />
        </p>
      )}
      <ProbabilityBar probability={shown.probability} />
      <AnswerMass mass={shown.answer_mass} minimum={shown.min_answer_mass} answer={answer} />
      <h3 className="subhead">Explanation</h3>
      {prediction ? (
        <p className="explanation">
          {prediction.explanation || (
            <span className="muted">{explainAsked ? "The model gave no explanation." : "No explanation was asked for."}</span>
          )}
        </p>
      ) : (
        <>
          <p ref={ref} tabIndex={-1} className="explanation explanation-writing" aria-busy={!writing.stopped}>
            {writing.text}
            <span className="muted">
              {writing.stopped ? " — stopped before the model finished." : writing.text ? "…" : "The model is writing…"}
            </span>
          </p>
          {!writing.stopped && (
            <button type="button" className="button button-secondary" onClick={writing.onStop}>
              Stop explanation
            </button>
          )}
        </>
      )}
      <dl className="facts">
          <dt>Question</dt>
          <dd>{shown.question}</dd>
          {prediction && (
            <>
              <dt>Model</dt>
              <dd>
                {prediction.model.id}
                {prediction.model.demo ? " (demo, random weights)" : ""}
                {prediction.model.adapter ? ` + fine-tuned adapter ${prediction.model.adapter.name} (${prediction.model.adapter.sha256})` : ""} · {prediction.model.device}
                {prediction.model.compute?.cpu_class ? ` (CPU class ${prediction.model.compute.cpu_class})` : ""} · {QUANTIZATION[prediction.model.quantization]}
                {prediction.model.engine === "vllm" ? ` · served by the OpenAI-compatible engine at ${prediction.model.compute?.processor ?? "ENGINE_URL"}` : ""}
              </dd>
            </>
          )}
          {shown.unseen_mass > 0.005 && (
            <>
              <dt>Unseen</dt>
              <dd>the engine showed its top tokens only: P(yes) and the answer mass are exact up to {Math.round(shown.unseen_mass * 100)}% of probability it did not show</dd>
            </>
          )}
          <dt>Threshold</dt>
          <dd>a yes needs P(yes) ≥ {shown.threshold.toFixed(2)}</dd>
          {prediction && (
            <>
              <dt>Timing</dt>
              <dd>
                {prediction.cached
                  ? `answered from the service's cache (same image and question) · total ${formatMs(prediction.timings_ms.total)}`
                  : `model ${formatMs(prediction.timings_ms.model)} · total ${formatMs(prediction.timings_ms.total)}`}
              </dd>
            </>
          )}
      </dl>
    </section>
  );
});

import { forwardRef } from "react";
import type { Prediction } from "../../../api/client";
import { TriageBand } from "../../../components/TriageBand";
import { formatMs } from "../../../lib/format";

const ANSWER_WORD = { yes: "YES", no: "NO", uncertain: "UNCERTAIN" } as const;
const QUANTIZATION: Record<string, string> = { int8: "int8", none: "bf16", "engine's own": "the engine's own precision" };

const ANSWER_HINT = {
  yes: "The model reports features suggestive of colorectal cancer",
  no: "The model reports no features of colorectal cancer",
  uncertain: "No clear yes or no from the model: review the image yourself",
} as const;

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

type Props = {
  prediction: Prediction;
  fileName: string;
  /** Whether the request asked for an explanation: an empty one means "not asked" or "none given". */
  explainAsked: boolean;
};

/** The answer. Focused when it arrives (tabIndex -1) so keyboard and screen-reader users land on it. */
export const ResultCard = forwardRef<HTMLElement, Props>(function ResultCard({ prediction, fileName, explainAsked }, ref) {
  const { answer, model, timings_ms: timings } = prediction;
  return (
    <section ref={ref} tabIndex={-1} className="panel result" aria-labelledby="result-title">
      <p className="eyebrow">Result · {fileName}</p>
      <h2 id="result-title" className="result-title">
        <span className="visually-hidden">Answer: </span>
        <AnswerBadge answer={answer} />
        <span className="result-hint">{ANSWER_HINT[answer]}</span>
      </h2>
      {prediction.triage && (
        <p className="triage-line" aria-label="Triage">
          Triage: <TriageBand band={prediction.triage} />
        </p>
      )}
      <ProbabilityBar probability={prediction.probability} />
      <AnswerMass mass={prediction.answer_mass} minimum={prediction.min_answer_mass} answer={answer} />
      <h3 className="subhead">Explanation</h3>
      <p className="explanation">
        {prediction.explanation || (
          <span className="muted">{explainAsked ? "The model gave no explanation." : "No explanation was asked for."}</span>
        )}
      </p>
      <dl className="facts">
          <dt>Question</dt>
          <dd>{prediction.question}</dd>
          <dt>Model</dt>
          <dd>
            {model.id}
            {model.demo ? " (demo, random weights)" : ""}
            {model.adapter ? ` + fine-tuned adapter ${model.adapter.name} (${model.adapter.sha256})` : ""} · {model.device}
            {model.compute?.cpu_class ? ` (CPU class ${model.compute.cpu_class})` : ""} · {QUANTIZATION[model.quantization]}
            {model.engine === "vllm" ? ` · served by the OpenAI-compatible engine at ${model.compute?.processor ?? "ENGINE_URL"}` : ""}
          </dd>
          {prediction.unseen_mass > 0.005 && (
            <>
              <dt>Unseen</dt>
              <dd>the engine showed its top tokens only: P(yes) and the answer mass are exact up to {Math.round(prediction.unseen_mass * 100)}% of probability it did not show</dd>
            </>
          )}
          <dt>Threshold</dt>
          <dd>a yes needs P(yes) ≥ {prediction.threshold.toFixed(2)}</dd>
          <dt>Timing</dt>
          <dd>
            {prediction.cached
              ? `answered from the service's cache (same image and question) · total ${formatMs(timings.total)}`
              : `model ${formatMs(timings.model)} · total ${formatMs(timings.total)}`}
          </dd>
      </dl>
    </section>
  );
});

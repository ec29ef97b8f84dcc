import { useEffect, useState } from "react";

type Props = { startedAt: number; fileName: string; onCancel: () => void };

/** Shown until the answer arrives. The page's live region says "Analysing" (once); the elapsed
 *  counter is in no live region on purpose: not a number every second. */
export function ProgressPanel({ startedAt, fileName, onCancel }: Props) {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 250);
    return () => clearInterval(timer);
  }, []);
  const seconds = Math.max(0, Math.floor((now - startedAt) / 1000));

  return (
    <section className="panel progress" aria-labelledby="progress-title" aria-busy="true">
      <h2 id="progress-title" className="panel-title">
        Analysing {fileName}…
      </h2>
      <div className="progress-track" aria-hidden="true">
        <div className="progress-bar" />
      </div>
      <p className="elapsed" aria-live="off">
        <span className="elapsed-number">{seconds} s</span> elapsed
      </p>
      <p className="muted small">On a CPU an answer can take tens of seconds.</p>
      <button type="button" className="button button-secondary" onClick={onCancel}>
        Cancel
      </button>
    </section>
  );
}

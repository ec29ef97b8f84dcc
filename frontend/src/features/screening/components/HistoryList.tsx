import type { Prediction } from "../../../api/client";
import { AnswerBadge } from "./ResultCard";
import { Thumbnail } from "./Thumbnail";

export type HistoryEntry = {
  id: number;
  fileName: string;
  /** An object URL this entry owns (revoked on clear), or null when the browser cannot draw the file. */
  thumbnailUrl: string | null;
  answer: Prediction["answer"];
  probability: number;
  at: Date;
};

type Props = { entries: HistoryEntry[]; onClear: () => void };

export function HistoryList({ entries, onClear }: Props) {
  return (
    <section className="panel history" aria-labelledby="history-title">
      <div className="history-head">
        <h2 id="history-title" className="panel-title">
          This session’s results
        </h2>
        {entries.length > 0 && (
          <button type="button" className="button button-secondary" onClick={onClear}>
            Clear results
          </button>
        )}
      </div>
      <p className="muted small">Kept in this tab’s memory only; nothing is stored on this device.</p>
      {entries.length === 0 ? (
        <p className="muted">No results yet.</p>
      ) : (
        <ul className="history-list" aria-label="Results">
          {entries.map((entry) => (
            <li key={entry.id} className="history-item">
              <Thumbnail url={entry.thumbnailUrl} name={entry.fileName} className="history-thumb" />
              <div className="history-meta">
                <span className="history-name">{entry.fileName}</span>
                <span className="muted small">
                  {entry.at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })}
                </span>
              </div>
              <div className="history-answer">
                <AnswerBadge answer={entry.answer} />
                <span className="small">P(yes) {entry.probability.toFixed(2)}</span>
              </div>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

import type { SlideJob } from "../../../api/client";
import { formatEta } from "../messages";

type Props = {
  fileName: string;
  uploaded: number; // fraction of the file sent, 0..1
  job: SlideJob | null; // null while uploading
  onCancel: () => void;
};

/** Two bars: the upload, then tiles scored / total with the ETA. */
export function SlideProgress({ fileName, uploaded, job, onCancel }: Props) {
  const uploadPercent = Math.round(uploaded * 100);
  const done = job?.progress.tiles_done ?? 0;
  const total = job?.progress.tiles_total ?? 0;
  const eta = formatEta(job?.progress.eta_s);
  const stage = !job
    ? `Uploading ${fileName}…`
    : job.status === "queued"
      ? `Waiting: ${job.progress.queue_position ?? 0} slide(s) ahead`
      : `Scoring ${fileName}…`;

  return (
    <section className="panel progress" aria-labelledby="slide-progress-title" aria-busy="true">
      <div role="status">
        <h2 id="slide-progress-title" className="panel-title">
          {stage}
        </h2>
      </div>
      <div className="meter-row">
        <span className="small">Upload</span>
        <div className="meter-track" role="progressbar" aria-label="Upload" aria-valuemin={0} aria-valuemax={100} aria-valuenow={uploadPercent}>
          <div className="meter-fill" style={{ width: `${uploadPercent}%` }} />
        </div>
        <span className="small tabular">{uploadPercent}%</span>
      </div>
      <div className="meter-row">
        <span className="small">Tiles</span>
        <div
          className="meter-track"
          role="progressbar"
          aria-label="Tiles scored"
          aria-valuemin={0}
          aria-valuemax={total}
          aria-valuenow={done}
          aria-valuetext={`${done} of ${total} tiles`}
        >
          <div className="meter-fill" style={{ width: total ? `${(100 * done) / total}%` : "0%" }} />
        </div>
        <span className="small tabular">
          {done} / {total}
        </span>
      </div>
      <p className="muted small" aria-live="off">
        {job ? `${done} of ${total} tissue tiles scored${eta ? ` · ${eta}` : ""}` : "The slide is sent to the service, then its tissue is found."}
      </p>
      <p className="muted small">On a CPU each tile can take tens of seconds; you can leave this page open.</p>
      <button type="button" className="button button-secondary" onClick={onCancel}>
        Cancel
      </button>
    </section>
  );
}

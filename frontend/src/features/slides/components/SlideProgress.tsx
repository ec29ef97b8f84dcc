import type { SlideJob } from "../../../api/client";
import { formatBytes } from "../../../lib/format";
import type { UploadRoute } from "../api/slides";
import { formatEta } from "../messages";

/** Where the upload stands: bytes of the file sent, and which way they go. */
export type UploadState = {
  route: UploadRoute; // "bucket": straight to storage; "form": through the service
  sent: number;
  total: number;
  resuming: boolean; // the connection dropped; waiting to resume where storage left off
};

type Props = {
  fileName: string;
  upload: UploadState;
  job: SlideJob | null; // null while uploading
  onCancel: () => void;
};

/** Two bars: the upload, then tiles scored / total with the ETA. */
export function SlideProgress({ fileName, upload, job, onCancel }: Props) {
  const uploadPercent = upload.total ? Math.round((100 * upload.sent) / upload.total) : job ? 100 : 0;
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
      {!job && (
        <p className="small tabular">
          {formatBytes(upload.sent)} of {formatBytes(upload.total)} sent
        </p>
      )}
      <p className="muted small" aria-live="off">
        {job ? `${done} of ${total} tissue tiles scored${eta ? ` · ${eta}` : ""}` : uploadNote(upload)}
      </p>
      <p className="muted small">On a CPU each tile can take tens of seconds; you can leave this page open.</p>
      <button type="button" className="button button-secondary" onClick={onCancel}>
        Cancel
      </button>
    </section>
  );
}

function uploadNote(upload: UploadState): string {
  if (upload.route === "form") return "The slide is sent to the service, then its tissue is found.";
  if (upload.resuming) return "The connection dropped. Resuming where storage left off…";
  return "The slide goes straight to storage, then the service finds its tissue.";
}

import { forwardRef, useMemo, useState, type MouseEvent } from "react";
import type { SlideJob, SlideTiles } from "../../../api/client";
import { BAND_HINT, TriageBand } from "../../../components/TriageBand";
import { heatmapUrl, overlayUrl } from "../api/slides";

type Tile = SlideTiles["tiles"][number];
type Props = { job: SlideJob; tiles: SlideTiles; fileName: string };

const percent = (value: number | null | undefined) => (value === null || value === undefined ? "—" : value.toFixed(2));

function tileAnswer(tile: Tile, minAnswerMass: number): string {
  if (tile.answer_mass < minAnswerMass) {
    return `no answer (only ${Math.round(tile.answer_mass * 100)}% of the model's probability on yes or no)`;
  }
  return `P(yes) ${tile.probability.toFixed(2)}`;
}

function tileBand(tile: Tile): string {
  return tile.triage ? `, triage ${tile.triage} (${BAND_HINT[tile.triage]})` : "";
}

/** The heatmap over the thumbnail (hover or click a tile for its P(yes)), the summary, the threshold. */
export const SlideResult = forwardRef<HTMLElement, Props>(function SlideResult({ job, tiles, fileName }, ref) {
  const [hovered, setHovered] = useState<Tile | null>(null);
  const [picked, setPicked] = useState<Tile | null>(null);
  const summary = job.summary!;
  const size = job.slide.tile_size;
  const grid = useMemo(() => new Map(tiles.tiles.map((tile) => [`${tile.x / size},${tile.y / size}`, tile])), [tiles, size]);
  const shown = hovered ?? picked;
  const answered = summary.tiles_scored - summary.tiles_unanswered;
  const bands = summary.triage_thresholds;
  const counts = summary.tiles_per_band;

  function tileAt(event: MouseEvent<HTMLImageElement>): Tile | null {
    const box = event.currentTarget.getBoundingClientRect(); // the image as drawn: positions scale to the slide
    if (!box.width || !box.height) return null;
    const x = ((event.clientX - box.left) / box.width) * tiles.width;
    const y = ((event.clientY - box.top) / box.height) * tiles.height;
    return grid.get(`${Math.floor(x / size)},${Math.floor(y / size)}`) ?? null;
  }

  return (
    <section ref={ref} tabIndex={-1} className="panel result slide-result" aria-labelledby="slide-result-title">
      <p className="eyebrow">{fileName}</p>
      <h2 id="slide-result-title" className="result-title">
        Slide heatmap
      </h2>
      {summary.triage && (
        <p className="triage-line" aria-label="Slide triage">
          Triage: <TriageBand band={summary.triage} />
          {counts && (
            <span className="muted small">
              {" "}
              (its most urgent tile) · {counts["rule-in"] ?? 0} rule-in · {counts.refer ?? 0} refer · {counts["rule-out"] ?? 0} rule-out tiles
            </span>
          )}
        </p>
      )}
      {summary.tissue_found ? (
        <dl className="facts" aria-label="Slide summary">
          <dt>Highest tile P(yes)</dt>
          <dd>{percent(summary.max_probability)}</dd>
          <dt>Mean of top {summary.top_k}</dt>
          <dd>{percent(summary.top_k_mean)}</dd>
          <dt>Tiles at or above {summary.threshold}</dt>
          <dd>
            {summary.tiles_above_threshold} of {answered} ({Math.round((summary.area_fraction_above ?? 0) * 100)}% of tissue)
          </dd>
          {summary.tiles_unanswered > 0 && (
            <>
              <dt>Tiles without an answer</dt>
              <dd>
                {summary.tiles_unanswered} of {summary.tiles_scored}: the model did not say yes or no (grey on the
                heatmap, counted in no figure above). Review them yourself.
              </dd>
            </>
          )}
          <dt>Threshold</dt>
          <dd>P(yes) ≥ {summary.threshold}</dd>
        </dl>
      ) : (
        <p role="note" aria-label="No tissue">
          No tissue found on this slide: nothing was scored.
        </p>
      )}
      <div className="heatmap">
        <img
          className="heatmap-image"
          src={overlayUrl(job)}
          alt={`Heatmap of P(yes) per tile over ${fileName}`}
          onMouseMove={(event) => setHovered(tileAt(event))}
          onMouseLeave={() => setHovered(null)}
          onClick={(event) => setPicked(tileAt(event))}
        />
        {shown && (
          <div
            className="heatmap-highlight"
            aria-hidden="true"
            style={{
              left: `${(100 * shown.x) / tiles.width}%`,
              top: `${(100 * shown.y) / tiles.height}%`,
              width: `${(100 * shown.size) / tiles.width}%`,
              height: `${(100 * shown.size) / tiles.height}%`,
            }}
          />
        )}
      </div>
      <div className="legend" aria-label="Colour scale">
        <span>0</span>
        <span className="legend-bar" aria-hidden="true">
          <span className="legend-threshold" style={{ left: `${summary.threshold * 100}%` }} />
        </span>
        <span>1</span>
        <span className="muted small">
          {bands
            ? `P(yes) per tile · red outline: rule-in (P(yes) > ${bands.rule_in}) · white outline: refer · none: rule-out (P(yes) < ${bands.rule_out}) · grey: no answer`
            : `P(yes) per tile · white outline: at or above ${summary.threshold} · grey: no answer`}
        </span>
      </div>
      <p role="status" aria-label="Tile" className="tile-readout">
        {shown
          ? `Tile at x ${shown.x}, y ${shown.y} (level-0 px, ${shown.size} px square): ${tileAnswer(shown, summary.min_answer_mass)}${tileBand(shown)}, ${Math.round(shown.tissue * 100)}% tissue`
          : "Point at or click a tile to see its probability."}
      </p>
      <dl className="facts">
        <dt>Slide</dt>
        <dd>
          {job.slide.width} × {job.slide.height} px{job.slide.vendor ? ` · ${job.slide.vendor}` : ""}
        </dd>
        <dt>Tiles</dt>
        <dd>
          {job.slide.tile_px} px at {job.slide.tile_mpp ? `${job.slide.tile_mpp} µm/px` : "the slide's own pixels (no resolution stated)"}
        </dd>
        <dt>Model</dt>
        <dd>
          {job.model.id}
          {job.model.demo ? " (demo)" : ""}
          {job.model.adapter ? ` + adapter ${job.model.adapter.name}` : ""}
        </dd>
        <dt>Question</dt>
        <dd>{job.question}</dd>
      </dl>
      <p className="small">
        <a href={heatmapUrl(job)} download>
          Download the heatmap with its legend (PNG)
        </a>
      </p>
    </section>
  );
});

"""A job's results, made once every shard is in: the tiles, both heatmaps and the summary.

Any task may be the one to find every shard complete, and two may find it at once: `finish` is
idempotent (the same inputs write the same objects) and the state moves to done by
compare-and-swap, once. The heatmap's thumbnail is the one the service stored at upload.
"""

import io
import time

from PIL import Image

from healer.slides import heatmap
from healer.slides.state import (
    FINISHED, HEATMAP, OVERLAY, STATE, THUMBNAIL, TILES, JobState, Shard, key, shard_name,
)
from healer.slides.store import Store
from healer.screening.triage import Triage
from healer.slides.summary import answered, summarise, tile_bands
from healer.slides.tiling import Tile

DEMO_NOTE = "Demo model (random weights): these colours are meaningless."
NOTE = "P(yes) per tile; grey: no answer. Screening aid, not a diagnosis."


def collected(store: Store, job: JobState) -> Shard | None:
    """Every shard's tiles in order, as one complete shard; None while any is missing or partial."""
    merged = Shard(0, 1, complete=True)
    for index in range(job.task_count):
        try:
            shard = Shard.of(store.read_json(key(job.id, shard_name(index, job.task_count))))
        except FileNotFoundError:
            return None
        if not shard.complete:
            return None
        merged.probabilities += shard.probabilities
        merged.answer_masses += shard.answer_masses
    return merged


def tiles_done(store: Store, job: JobState) -> int:
    done = 0
    for name in store.keys(key(job.id, "shards/")):
        if name.endswith(f"-of-{job.task_count:05d}.json"):
            try:
                done += len(store.read_json(name)["probabilities"])
            except FileNotFoundError:
                pass  # deleted meanwhile
    return done


def finish(store: Store, job_id: str) -> JobState | None:
    """Writes the results and marks the job done when every shard is complete; returns the state
    then (None when a shard is still missing, or the job is gone)."""
    try:
        job = JobState.of(store.read_json(key(job_id, STATE)))
    except FileNotFoundError:
        return None
    if job.status in FINISHED:
        return job
    scored = collected(store, job)
    if scored is None:
        return None
    tiles = [Tile(*tile) for tile in job.tiles]
    triage = Triage(*job.triage) if job.triage else None
    found = tile_bands(scored.probabilities, scored.answer_masses, triage, job.min_answer_mass)
    store.write_json(key(job_id, TILES), [
        {"x": t.x, "y": t.y, "size": t.size, "tissue": t.tissue, "probability": p, "answer_mass": m, "triage": b}
        for t, p, m, b in zip(tiles, scored.probabilities, scored.answer_masses, found, strict=True)
    ])
    thumbnail = Image.open(io.BytesIO(store.read(key(job_id, THUMBNAIL)))).convert("RGB")
    shown = [answered(m, job.min_answer_mass) for m in scored.answer_masses]
    tinted = heatmap.overlay(thumbnail, (job.info["width"], job.info["height"]), tiles, scored.probabilities,
                             job.threshold, shown, found if triage else None)
    store.write(key(job_id, OVERLAY), heatmap.png(tinted))
    legend = heatmap.with_legend(tinted, job.threshold, DEMO_NOTE if job.demo else NOTE, triage)
    store.write(key(job_id, HEATMAP), heatmap.png(legend))
    summary = summarise(scored.probabilities, scored.answer_masses, job.threshold, job.top_k, job.min_answer_mass,
                        triage)

    def done(now: dict | None) -> dict | None:
        if now is None or now["status"] in FINISHED:
            return None
        return {**now, "status": "done", "finished": time.time(), "summary": summary.model_dump()}

    final = store.update(key(job_id, STATE), done)
    if final is not None and job.owned_slide:
        store.delete(job.slide)  # the slide is not kept once scored
    return JobState.of(final) if final is not None else JobState.of(store.read_json(key(job_id, STATE)))

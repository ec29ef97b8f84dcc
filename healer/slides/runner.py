"""Who scores a slide: this process, tile batch by tile batch, on the shared model.

Tiles go to the model in batches of SLIDE_BATCH_SIZE through `Batcher.run_batch`, which takes
turns with /predict batches on the model thread, so a slide never starves single images. Once
every tile is scored, the tiles and the heatmaps are written to the job's store.
"""

import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from healer.model.engine import Query
from healer.screening.batching import Batcher
from healer.settings import Settings
from healer.slides import heatmap, summary
from healer.slides.plan import MASK_SIDE
from healer.slides.reader import SlideReader
from healer.slides.store import JobStore

if TYPE_CHECKING:
    from healer.slides.jobs import Job

DEMO_NOTE = "Demo model (random weights): these colours are meaningless."
NOTE = "P(yes) per tile; grey: no answer. Screening aid, not a diagnosis."


class LocalRunner:
    def __init__(self, batcher: Batcher, settings: Settings, store: JobStore, demo: bool):
        self.batcher = batcher
        self.settings = settings
        self.store = store
        self.demo = demo

    async def score(self, job: "Job", on_batch: Callable[[float], Awaitable[None]]) -> None:
        """Appends every tile's P(yes) to `job.probabilities`, awaiting `on_batch(seconds per
        tile)` after each batch. Tiles are read by a child process with a deadline per batch;
        cancelling kills it, mid-read or not (healer.slides.reader)."""
        size, tile_px = self.settings.slide_batch_size, self.settings.slide_tile_px
        async with SlideReader.for_settings(self.settings) as reader:
            await reader.open(job.slide_path, MASK_SIDE)
            for start in range(0, len(job.plan.tiles), size):
                batch = job.plan.tiles[start:start + size]
                images = await reader.tiles(batch, tile_px)
                began = time.perf_counter()
                generations = await self.batcher.run_batch(
                    [Query(image, job.question, explain=False) for image in images]
                )
                job.probabilities.extend(round(g.p_yes, 6) for g in generations)
                job.answer_masses.extend(round(g.answer_mass, 6) for g in generations)
                await on_batch((time.perf_counter() - began) / len(batch))

    def write_results(self, job: "Job") -> None:
        """The tiles and both heatmaps into the store; the thumbnail is dropped once drawn."""
        plan, threshold = job.plan, self.settings.slide_threshold
        tiles = [
            {"x": t.x, "y": t.y, "size": t.size, "tissue": t.tissue, "probability": p, "answer_mass": m}
            for t, p, m in zip(plan.tiles, job.probabilities, job.answer_masses)
        ]
        answered = [summary.answered(m, self.settings.min_answer_mass) for m in job.answer_masses]
        tinted = heatmap.overlay(plan.thumbnail, (plan.info.width, plan.info.height), plan.tiles,
                                 job.probabilities, threshold, answered)
        legend = heatmap.with_legend(tinted, threshold, DEMO_NOTE if self.demo else NOTE)
        self.store.write_results(job.id, tiles, heatmap.png(tinted), heatmap.png(legend))
        job.plan = replace(plan, thumbnail=None)  # a finished job keeps nothing big in memory

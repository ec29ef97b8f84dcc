"""Scoring one shard of a job: the same code in the service (SLIDE_RUNNER=local) and in every
worker task (healer.slides.worker).

The shard object is rewritten after every batch, so progress is visible to every instance and a
retried task resumes where the last attempt stopped: batches are scored whole, in the same
grouping whoever scores them, so a resumed shard holds exactly what an uninterrupted one would.
Between batches the job's state is read: a job cancelled anywhere stops here.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from healer.model.engine import Generation, Query
from healer.settings import Settings
from healer.slides.plan import MASK_SIDE
from healer.slides.reader import SlideReader
from healer.slides.state import FINISHED, STATE, JobState, Shard, key, shard_name, shard_range
from healer.slides.store import Store
from healer.slides.tiling import Tile

ScoreBatch = Callable[[list[Query]], Awaitable[list[Generation]]]


@asynccontextmanager
async def local_copy(store: Store, ref: str) -> AsyncIterator[Path]:
    """`store.local_file` off the event loop (a download from Cloud Storage can take minutes)."""
    manager = store.local_file(ref)
    path = await asyncio.to_thread(manager.__enter__)
    try:
        yield path
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)


async def score_shard(store: Store, job: JobState, index: int, count: int, settings: Settings,
                      score_batch: ScoreBatch, on_batch: Callable[[float], None] | None = None) -> bool:
    """Scores what task `index` of `count` has not scored yet. False when the job was cancelled
    (or otherwise finished) before the shard was complete."""
    name = key(job.id, shard_name(index, count))
    try:
        shard = Shard.of(await asyncio.to_thread(store.read_json, name))
    except FileNotFoundError:
        shard = Shard(index, count)
    tiles = shard_range(len(job.tiles), index, count, job.batch_size)
    start = tiles.start + len(shard.probabilities)
    if start < tiles.stop:
        if await _stopped(store, job.id):
            return False
        async with local_copy(store, job.slide) as path, SlideReader.for_settings(settings) as reader:
            await reader.open(path, MASK_SIDE)
            for first in range(start, tiles.stop, job.batch_size):
                if await _stopped(store, job.id):
                    return False
                batch = [Tile(*tile) for tile in job.tiles[first:min(first + job.batch_size, tiles.stop)]]
                images = await reader.tiles(batch, job.info["tile_px"])
                began = time.perf_counter()
                generations = await score_batch([Query(image, job.question, explain=False) for image in images])
                shard.probabilities += [round(g.p_yes, 6) for g in generations]
                shard.answer_masses += [round(g.answer_mass, 6) for g in generations]
                shard.complete = len(shard.probabilities) >= len(tiles)
                await asyncio.to_thread(store.write_json, name, shard.to_json())
                if on_batch is not None:
                    on_batch((time.perf_counter() - began) / len(batch))
    if not shard.complete:
        shard.complete = True  # an empty shard, or one a previous attempt finished but did not mark
        await asyncio.to_thread(store.write_json, name, shard.to_json())
    return True


async def _stopped(store: Store, job_id: str) -> bool:
    try:
        status = (await asyncio.to_thread(store.read_json, key(job_id, STATE)))["status"]
    except FileNotFoundError:
        return True  # deleted
    return status in FINISHED

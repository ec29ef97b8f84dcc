"""What a reader is shown of a job: a snapshot of it, its progress, and its changes as they come."""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from healer.errors import SlideNotFound
from healer.slides.schemas import SlideProgress
from healer.slides.state import FINISHED, JobState

POLL_S = 0.5  # event streams read the store this often


@dataclass(frozen=True)
class Snapshot:
    job: JobState
    tiles_done: int
    queue_position: int | None


def progress(snapshot: Snapshot) -> SlideProgress:
    job, done = snapshot.job, snapshot.tiles_done
    total = len(job.tiles)
    elapsed = (job.finished or time.time()) - job.started if job.started else 0.0
    eta = round(elapsed / done * (total - done), 1) if job.status == "running" and done else None
    return SlideProgress(tiles_done=done, tiles_total=total, elapsed_s=round(max(0.0, elapsed), 1),
                         eta_s=eta, queue_position=snapshot.queue_position)


def expires_in_s(job: JobState, ttl_s: float) -> float | None:
    if job.finished is None:
        return None
    return round(max(0.0, job.finished + ttl_s - time.time()), 1)


async def updates(get: Callable[[str], Awaitable[Snapshot]], job_id: str) -> AsyncIterator[Snapshot]:
    """The job now and after every change, ending with a finished state (or its deletion)."""
    seen = None
    while True:
        try:
            snapshot = await get(job_id)
        except SlideNotFound:
            return  # deleted meanwhile
        mark = (snapshot.job.status, snapshot.tiles_done, snapshot.queue_position)
        if mark != seen:
            seen = mark
            yield snapshot
            if snapshot.job.status in FINISHED:
                return
        await asyncio.sleep(POLL_S)

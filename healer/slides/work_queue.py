"""The jobs this instance scores itself (SLIDE_RUNNER local or processes): one at a time, in the
order they came, each with a heartbeat in its state so that other instances see it is alive.

The queue's places are also taken by uploads while their body streams in, so a full queue
refuses the next upload before reading it: 503 with a Retry-After from the tiles still to score.
"""

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from healer.errors import Busy, HealerError, NotReady
from healer.logs import job_tag
from healer.slides.state import FINISHED, JobState
from healer.slides.store import Store
from healer.slides.transitions import change_job, finish_job

log = logging.getLogger(__name__)

HEARTBEAT_S = 10.0  # this instance refreshes its jobs' heartbeat this often (liveness.STALE_S)


class WorkQueue:
    def __init__(self, store: Store, runner, size: int):
        self.store, self.runner, self.size = store, runner, size
        self.closed = False  # the service is stopping: no job is taken any more
        self._waiting: deque[str] = deque()
        self._running: dict[str, asyncio.Task] = {}
        self._tiles: dict[str, int] = {}  # tiles of the jobs this instance will score
        self._reserved = 0  # uploads holding a place while their body streams in
        self._arrived = asyncio.Event()
        self._seconds_per_tile = 1.0  # refined by every batch; drives Retry-After
        self._loops: list[asyncio.Task] = []

    def start(self) -> None:
        self._loops = [asyncio.create_task(self._work_forever()), asyncio.create_task(self._heartbeat_forever())]

    async def stop(self) -> None:
        """Cancel what this instance scores or queues (others' jobs are not ours to stop)."""
        self.closed = True
        for job_id in list(self._waiting):
            await finish_job(self.store, job_id, "cancelled", "The service shut down before this slide was scored.")
        self._waiting.clear()
        tasks = [*self._running.values(), *self._loops]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def refuse_if_closed(self) -> None:
        if self.closed:
            raise NotReady("The service is shutting down. Retry on another instance.")

    @contextmanager
    def reserve(self) -> Iterator[None]:
        """A place for one upload, taken before its body is read: Busy (503, Retry-After) at once
        when the queue is full. Accepting the job inside the block fills the place."""
        self.refuse_if_closed()
        if len(self._waiting) + self._reserved >= self.size:
            raise Busy(retry_after_s=max(1, math.ceil(sum(self._tiles.values()) * self._seconds_per_tile)))
        self._reserved += 1
        try:
            yield
        finally:
            self._reserved -= 1

    def add(self, job_id: str, tiles: int) -> None:
        self._waiting.append(job_id)
        self._tiles[job_id] = tiles
        self._arrived.set()

    def holds(self, job_id: str) -> bool:
        return job_id in self._running or job_id in self._waiting

    def position(self, job_id: str) -> int | None:
        if job_id not in self._waiting:
            return None
        return self._waiting.index(job_id) + len(self._running)

    async def remove(self, job_id: str) -> None:
        """A cancelled job leaves the queue, or stops scoring here."""
        if job_id in self._waiting:
            self._waiting.remove(job_id)
        task = self._running.get(job_id)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _work_forever(self) -> None:
        while True:
            while not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
            job_id = self._waiting.popleft()
            task = asyncio.create_task(self._run(job_id), name=f"slide-{job_tag(job_id)}")
            self._running[job_id] = task
            await asyncio.gather(task, return_exceptions=True)
            self._running.pop(job_id, None)
            self._tiles.pop(job_id, None)

    async def _run(self, job_id: str) -> None:
        started = time.time()

        def running(now: dict | None) -> dict | None:
            if now is None or now["status"] != "queued":
                return None
            return {**now, "status": "running", "started": started, "heartbeat": started}

        written = await change_job(self.store, job_id, running)
        if written is None:
            return  # cancelled or deleted while it waited

        def scored_batch(seconds_per_tile: float) -> None:
            self._seconds_per_tile = 0.7 * self._seconds_per_tile + 0.3 * seconds_per_tile

        try:
            await self.runner.score(JobState.of(written), scored_batch)
            log.info("slide %s done in %.1f s", job_tag(job_id), time.time() - started)
        except asyncio.CancelledError:
            await finish_job(self.store, job_id, "cancelled", "The service shut down while scoring." if self.closed else None)
        except NotReady:
            await finish_job(self.store, job_id, "failed", "The service is shutting down; upload the slide again later.")
        except HealerError as error:
            await finish_job(self.store, job_id, "failed", error.message)
        except Exception:
            log.exception("slide %s failed", job_tag(job_id))
            await finish_job(self.store, job_id, "failed", HealerError.message)

    async def _heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            for job_id in [*self._waiting, *self._running]:
                await change_job(self.store, job_id, lambda now: None if now is None or now["status"] in FINISHED
                                 else {**now, "heartbeat": time.time()})

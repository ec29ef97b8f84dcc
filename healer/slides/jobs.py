"""The life cycle of slide jobs: accepted at once, scored one at a time, kept a while.

    queued ──▶ running ──▶ done
       │          ├──────▶ failed      (the slide's pixels unreadable, the service stopping)
       └──────────┴──────▶ cancelled   (DELETE, or shutdown)

Where a job's files live is `JobStore`'s business (healer.slides.store); who scores it is the
runner's (healer.slides.runner). Between batches the job's progress changes and every
event-stream listener is woken. A finished job's files are deleted SLIDE_RESULT_TTL_S after it
finished. Nothing here logs pixels, file names or questions, nor job ids (the only key to a
patient's results): only a short hash of the id (`job_tag`), counts and timings.
"""

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from healer.errors import Busy, HealerError, NotReady, SlideNotFound
from healer.logs import job_tag
from healer.screening.batching import Batcher
from healer.screening.schemas import ModelCard
from healer.settings import Settings
from healer.slides.plan import Plan
from healer.slides.runner import LocalRunner
from healer.slides.schemas import SlideProgress, SlideSummary
from healer.slides.store import JobStore
from healer.slides.summary import summarise

log = logging.getLogger(__name__)

FINISHED = ("done", "failed", "cancelled")


@dataclass
class Job:
    id: str
    slide_path: Path
    question: str
    plan: Plan
    status: str = "queued"
    probabilities: list[float] = field(default_factory=list)
    answer_masses: list[float] = field(default_factory=list)  # P(yes) + P(no) per tile, in step
    started: float | None = None
    finished: float | None = None  # monotonic, for the TTL
    error: str | None = None
    summary: SlideSummary | None = None
    task: asyncio.Task | None = None
    version: int = 0


class SlideJobs:
    """Create and `start()` inside the running event loop (the app's lifespan); `stop()` last."""

    def __init__(self, batcher: Batcher, settings: Settings, model: ModelCard):
        self.settings = settings
        self.model = model  # who answers, shown with every job
        self.store = JobStore(settings.slide_jobs_dir)
        self.runner = LocalRunner(batcher, settings, self.store, model.demo)
        self._jobs: dict[str, Job] = {}
        self._waiting: deque[Job] = deque()
        self._reserved = 0  # uploads holding a queue place while their body streams in
        self._arrived = asyncio.Event()
        self._changed = asyncio.Condition()
        self._seconds_per_tile = 1.0  # refined by every batch; drives Retry-After
        self._tasks: list[asyncio.Task] = []
        self._closed = False
        self._streams_ended = False  # the server is stopping: event streams end now

    async def start(self) -> None:
        self.store.remove_leftovers(self.settings.slide_result_ttl_s, keep=set(self._jobs))
        self._tasks = [asyncio.create_task(self._work(), name="slide-jobs"),
                       asyncio.create_task(self._sweep_forever(), name="slide-ttl")]

    def end_streams(self) -> None:
        """The server is stopping: every event stream ends now, so none holds up shutdown."""
        self._streams_ended = True
        asyncio.ensure_future(self._notify())

    async def stop(self) -> None:
        """Cancel what runs, drop what waits, wake every listener, delete every job's files."""
        self._closed = True
        for job in list(self._waiting):
            self._finish(job, "cancelled", "The service shut down before this slide was scored.")
        self._waiting.clear()
        running = [job.task for job in self._jobs.values() if job.task and not job.task.done()]
        for task in running + self._tasks:
            task.cancel()
        await asyncio.gather(*running, *self._tasks, return_exceptions=True)
        await self._notify()
        for job in list(self._jobs.values()):  # no later process could serve them: ids live in memory
            self._forget(job)
        self.store.close()

    # --- accepting ----------------------------------------------------------------------

    @contextmanager
    def reserve(self) -> Iterator[None]:
        """A queue place for one upload, taken before its body is read: Busy (503, Retry-After)
        at once when the queue is full. `accept` inside the block fills the place."""
        if self._closed:
            raise NotReady("The service is shutting down. Retry on another instance.")
        if len(self._waiting) + self._reserved >= self.settings.slide_queue:
            raise Busy(retry_after_s=self._retry_after_s())
        self._reserved += 1
        try:
            yield
        finally:
            self._reserved -= 1

    def accept(self, job_id: str, slide_path: Path, question: str, plan: Plan) -> Job:
        """Within `reserve()`: the place is the job's now."""
        if self._closed:
            raise NotReady("The service is shutting down. Retry on another instance.")
        job = Job(job_id, slide_path, question, plan)
        self._jobs[job_id] = job
        self._waiting.append(job)
        self._arrived.set()
        log.info("slide %s queued: %d tiles", job_tag(job_id), len(plan.tiles))
        return job

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise SlideNotFound()
        return job

    async def cancel(self, job_id: str) -> Job:
        """Stops a queued or running job; on a finished one, deletes its results now."""
        job = self.get(job_id)
        if job in self._waiting:
            self._waiting.remove(job)
            self._finish(job, "cancelled", None)
        elif job.task and not job.task.done():
            job.task.cancel()
            await asyncio.gather(job.task, return_exceptions=True)
        elif job.status in FINISHED:
            self._forget(job)
        await self._notify()
        return job

    # --- reading ------------------------------------------------------------------------

    def progress(self, job: Job) -> SlideProgress:
        total, done = len(job.plan.tiles), len(job.probabilities)
        elapsed = (job.finished or time.monotonic()) - job.started if job.started else 0.0
        eta = round(elapsed / done * (total - done), 1) if job.status == "running" and done else None
        position = None
        if job.status == "queued" and job in self._waiting:
            position = self._waiting.index(job) + sum(
                1 for other in self._jobs.values() if other.status == "running"
            )
        return SlideProgress(tiles_done=done, tiles_total=total, elapsed_s=round(elapsed, 1),
                             eta_s=eta, queue_position=position)

    def expires_in_s(self, job: Job) -> float | None:
        if job.finished is None:
            return None
        return round(max(0.0, job.finished + self.settings.slide_result_ttl_s - time.monotonic()), 1)

    async def updates(self, job: Job, keepalive_s: float = 15) -> AsyncIterator[Job | None]:
        """The job now and after every change, ending with a finished state; None when
        nothing changed for `keepalive_s` (the stream sends a comment to stay open)."""
        seen = -1
        while True:
            async with self._changed:
                try:
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: job.version != seen or self._ending), keepalive_s
                    )
                except asyncio.TimeoutError:
                    yield None
                    continue
            seen = job.version
            yield job
            if job.status in FINISHED or self._ending:
                return

    @property
    def _ending(self) -> bool:
        return self._closed or self._streams_ended

    # --- working ------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            while not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
            job = self._waiting.popleft()
            job.task = asyncio.create_task(self._run(job), name=f"slide-{job_tag(job.id)}")
            await asyncio.gather(job.task, return_exceptions=True)

    async def _run(self, job: Job) -> None:
        job.status, job.started = "running", time.monotonic()
        await self._notify(job)

        async def scored_batch(seconds_per_tile: float) -> None:
            self._seconds_per_tile = 0.7 * self._seconds_per_tile + 0.3 * seconds_per_tile
            await self._notify(job)

        try:
            await self.runner.score(job, scored_batch)
            await asyncio.to_thread(self.runner.write_results, job)
            job.summary = summarise(job.probabilities, job.answer_masses, self.settings.slide_threshold,
                                    self.settings.slide_top_k, self.settings.min_answer_mass)
            self._finish(job, "done", None)
            log.info("slide %s done: %d tiles in %.1f s", job_tag(job.id), len(job.probabilities),
                     time.monotonic() - job.started)
        except asyncio.CancelledError:
            self._finish(job, "cancelled", "The service shut down while scoring." if self._closed else None)
        except NotReady:
            self._finish(job, "failed", "The service is shutting down; upload the slide again later.")
        except HealerError as error:
            self._finish(job, "failed", error.message)
        except Exception:
            log.exception("slide %s failed", job_tag(job.id))
            self._finish(job, "failed", HealerError.message)
        finally:
            job.slide_path.unlink(missing_ok=True)
            await self._notify(job)

    def _finish(self, job: Job, status: str, error: str | None) -> None:
        job.status, job.error, job.finished = status, error, time.monotonic()
        job.version += 1
        if status != "done":
            job.slide_path.unlink(missing_ok=True)

    def _retry_after_s(self) -> int:
        tiles = sum(len(job.plan.tiles) - len(job.probabilities)
                    for job in self._jobs.values() if job.status in ("queued", "running"))
        return max(1, math.ceil(tiles * self._seconds_per_tile))

    async def _notify(self, job: Job | None = None) -> None:
        if job is not None:
            job.version += 1
        async with self._changed:
            self._changed.notify_all()

    # --- time to live -------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        interval = min(60.0, self.settings.slide_result_ttl_s / 4)
        while True:
            await asyncio.sleep(interval)
            self.sweep()

    def sweep(self) -> None:
        """Forget finished jobs older than SLIDE_RESULT_TTL_S and delete their files."""
        expiry = time.monotonic() - self.settings.slide_result_ttl_s
        for job in [j for j in self._jobs.values() if j.finished is not None and j.finished < expiry]:
            self._forget(job)
            log.info("slide %s expired: results deleted", job_tag(job.id))

    def _forget(self, job: Job) -> None:
        self._jobs.pop(job.id, None)
        self.store.delete(job.id)

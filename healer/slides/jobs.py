"""The life cycle of slide jobs, kept in the store so that every instance answers for every job.

A job is accepted at once (its plan made, its state written), scored by the runner
(healer.slides.runner), followed through its state and shards, cancelled from any instance, and
deleted SLIDE_RESULT_TTL_S after it finished (by whichever instance sweeps first; on Cloud
Storage a bucket lifecycle rule is the backstop). This process keeps in memory only what it
does itself: the queue of jobs it will score (local runners), and their heartbeat.

A job can lose its scorer: an instance scaled in or redeployed mid-job stops its heartbeat, a
Cloud Run execution can fail. Whoever reads such a job marks it failed, so a page never waits
forever. Nothing here logs pixels, file names, questions or job ids: only `job_tag` hashes.
"""

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePath

from healer.errors import (
    Busy, HealerError, NotReady, ResultsNotReady, SlideNotFound, TooLarge, UnsupportedSlide, UploadNotFound,
)
from healer.logs import job_tag
from healer.screening.batching import Batcher
from healer.screening.schemas import ModelCard
from healer.settings import Settings
from healer.slides import heatmap
from healer.slides.plan import Plan
from healer.slides.results import finish, tiles_done
from healer.slides.runner import CloudRunRunner, make_runner
from healer.slides.schemas import SlideProgress
from healer.slides.state import FINISHED, STATE, THUMBNAIL, UPLOAD, JobState, key
from healer.slides.stores import open_store
from healer.slides.wsi import SUFFIXES

log = logging.getLogger(__name__)

HEARTBEAT_S = 10.0  # the scoring instance refreshes its jobs' heartbeat this often…
STALE_S = 60.0  # …and a queued or running job whose heartbeat is older lost its instance
EXECUTION_CHECK_S = 30.0  # a Cloud Run execution's state is asked at most this often per job
POLL_S = 0.5  # event streams read the store this often
UPLOAD_GRACE_S = 24 * 3600  # a direct upload not started yet is kept this long at least (slow links)
UPLOAD_CHUNK_BYTES = 8 * 1024 * 1024  # what a direct upload's client sends per request (256 KiB multiple)
LOST = "The instance scoring this slide stopped (a redeploy or a scale-in). Upload it again."
TASKS_FAILED = "Scoring failed: a worker task failed after its retries. Upload the slide again."


@dataclass(frozen=True)
class Snapshot:
    job: JobState
    tiles_done: int
    queue_position: int | None


class SlideJobs:
    """Create and `start()` inside the running event loop (the app's lifespan); `stop()` last."""

    def __init__(self, batcher: Batcher, settings: Settings, model: ModelCard, runner=None):
        self.settings = settings
        self.model = model  # who answers, shown with every job
        self.store = open_store(settings.slide_store, settings.slide_store_mount)
        self.runner = runner or make_runner(settings, self.store, batcher)
        self._waiting: deque[str] = deque()
        self._running: dict[str, asyncio.Task] = {}
        self._tiles: dict[str, int] = {}  # tiles of the jobs this instance will score
        self._reserved = 0  # uploads holding a queue place while their body streams in
        self._arrived = asyncio.Event()
        self._checked: dict[str, float] = {}  # when each execution's state was last asked
        self._seconds_per_tile = 1.0  # refined by every batch; drives Retry-After
        self._tasks: list[asyncio.Task] = []
        self._closed = False

    async def start(self) -> None:
        loops = [self._sweep_forever()]
        if self.runner.queued:
            loops += [self._work(), self._heartbeat_forever()]
        self._tasks = [asyncio.create_task(loop) for loop in loops]

    async def stop(self) -> None:
        """Cancel what this instance scores or queues (others' jobs are not ours to stop)."""
        self._closed = True
        for job_id in list(self._waiting):
            await self._finish(job_id, "cancelled", "The service shut down before this slide was scored.")
        self._waiting.clear()
        running = list(self._running.values())
        for task in running + self._tasks:
            task.cancel()
        await asyncio.gather(*running, *self._tasks, return_exceptions=True)
        await asyncio.to_thread(self.store.close)

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

    def slide_key(self, job_id: str, filename: str) -> str:
        suffix = PurePath(filename).suffix.lower()
        return key(job_id, "slide" + (suffix if suffix in SUFFIXES else ""))

    async def open_upload(self, filename: str, size: int, origin: str | None) -> tuple[str, str]:
        """(upload id, resumable upload URL) for a slide sent straight to Cloud Storage."""
        if size > self.settings.max_slide_bytes:
            raise TooLarge("The slide is larger than this service accepts (see MAX_SLIDE_MB).")
        if PurePath(filename).suffix.lower() not in SUFFIXES:
            raise UnsupportedSlide()
        job_id = self.store.new_job_id()
        slide = self.slide_key(job_id, filename)
        url = await asyncio.to_thread(self.store.upload_session, slide, size, origin)
        await asyncio.to_thread(self.store.write_json, key(job_id, UPLOAD), {"slide": slide, "size": size})
        log.info("slide %s: direct upload opened, %.1f MB", job_tag(job_id), size / 1e6)
        return job_id, url

    async def uploaded_slide(self, upload_id: str) -> str:
        """The key of a finished direct upload; UploadNotFound while bytes are missing."""
        try:
            upload = await asyncio.to_thread(self.store.read_json, key(upload_id, UPLOAD))
        except FileNotFoundError:
            raise UploadNotFound() from None
        size = await asyncio.to_thread(self.store.size, upload["slide"])
        if size is None or size != upload["size"]:
            raise UploadNotFound()
        return upload["slide"]

    async def outside_slide(self, uri: str) -> None:
        """A gs:// slide the service was asked to read: there, readable, within MAX_SLIDE_MB."""
        size = await asyncio.to_thread(self.store.size, uri)  # SlideNotReadable when forbidden
        if size is None:
            raise UploadNotFound("There is no Cloud Storage object at this URI.")
        if size > self.settings.max_slide_bytes:
            raise TooLarge("The slide is larger than this service accepts (see MAX_SLIDE_MB).")

    async def accept(self, job_id: str, slide: str, owned: bool, question: str, plan: Plan) -> Snapshot:
        """Within `reserve()`: the job is stored, and queued here or started on Cloud Run."""
        if self._closed:
            raise NotReady("The service is shutting down. Retry on another instance.")
        s = self.settings
        job = JobState(
            id=job_id, question=question, info=plan.info.model_dump(),
            tiles=[[t.x, t.y, t.size, t.tissue] for t in plan.tiles], slide=slide, owned_slide=owned,
            runner=s.slide_runner, task_count=self.runner.task_count(len(plan.tiles)), batch_size=s.slide_batch_size,
            demo=self.model.demo, threshold=s.slide_threshold, top_k=s.slide_top_k, min_answer_mass=s.min_answer_mass,
            triage=[s.triage.rule_out, s.triage.rule_in] if s.triage else None,
            heartbeat=time.time() if self.runner.queued else None,
        )
        await asyncio.to_thread(self.store.write, key(job_id, THUMBNAIL), heatmap.png(plan.thumbnail))
        await asyncio.to_thread(self.store.write_json, key(job_id, STATE), job.to_json())
        await asyncio.to_thread(self.store.delete, key(job_id, UPLOAD))
        log.info("slide %s queued: %d tiles in %d task(s)", job_tag(job_id), len(plan.tiles), job.task_count)
        if self.runner.queued:
            self._waiting.append(job_id)
            self._tiles[job_id] = len(plan.tiles)
            self._arrived.set()
            return await self.get(job_id)
        try:
            execution = await self.runner.start(job)
        except Exception:
            log.exception("slide %s: the Cloud Run Job did not start", job_tag(job_id))
            await self._finish(job_id, "failed", "The scoring job could not be started. Try again later.")
            raise NotReady("The slide scoring job could not be started. Try again later.") from None
        await self._change(job_id, lambda now: {**now, "status": "running", "started": time.time(),
                                                "execution": execution})
        return await self.get(job_id)

    # --- reading ------------------------------------------------------------------------

    async def get(self, job_id: str) -> Snapshot:
        job = await self._read(job_id)
        if job.status not in FINISHED:
            job = await self._check(job)
        done = len(job.tiles) if job.status == "done" else await asyncio.to_thread(tiles_done, self.store, job)
        return Snapshot(job, done, self._queue_position(job_id))

    async def result(self, job_id: str, name: str) -> tuple[JobState, bytes]:
        """A result object of a done job (tiles.json, overlay.png, heatmap.png), with the job."""
        job = await self._read(job_id)
        if job.status != "done":
            raise ResultsNotReady()
        try:
            return job, await asyncio.to_thread(self.store.read, key(job_id, name))
        except FileNotFoundError:  # expired between the lookup and the read
            raise SlideNotFound() from None

    def progress(self, snapshot: Snapshot) -> SlideProgress:
        job, done = snapshot.job, snapshot.tiles_done
        total = len(job.tiles)
        elapsed = (job.finished or time.time()) - job.started if job.started else 0.0
        eta = round(elapsed / done * (total - done), 1) if job.status == "running" and done else None
        return SlideProgress(tiles_done=done, tiles_total=total, elapsed_s=round(max(0.0, elapsed), 1),
                             eta_s=eta, queue_position=snapshot.queue_position)

    def expires_in_s(self, job: JobState) -> float | None:
        if job.finished is None:
            return None
        return round(max(0.0, job.finished + self.settings.slide_result_ttl_s - time.time()), 1)

    async def updates(self, job_id: str) -> AsyncIterator[Snapshot]:
        """The job now and after every change, ending with a finished state (or its deletion)."""
        seen = None
        while True:
            try:
                snapshot = await self.get(job_id)
            except SlideNotFound:
                return  # deleted meanwhile
            mark = (snapshot.job.status, snapshot.tiles_done, snapshot.queue_position)
            if mark != seen:
                seen = mark
                yield snapshot
                if snapshot.job.status in FINISHED:
                    return
            await asyncio.sleep(POLL_S)

    # --- cancelling and deleting ----------------------------------------------------------

    async def cancel(self, job_id: str) -> Snapshot:
        """Stops a queued or running job, wherever it runs; on a finished one, deletes its results."""
        snapshot = await self.get(job_id)
        job = snapshot.job
        if job.status in FINISHED:
            await asyncio.to_thread(self.store.delete_job, job_id)
            log.info("slide %s: results deleted on request", job_tag(job_id))
            return snapshot
        await self._finish(job_id, "cancelled", None)
        if job_id in self._waiting:
            self._waiting.remove(job_id)
        task = self._running.get(job_id)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if job.execution and isinstance(self.runner, CloudRunRunner):
            try:
                await self.runner.cancel(job.execution)
            except Exception:  # the tasks stop between batches anyway: they read the state
                log.warning("slide %s: the execution could not be cancelled", job_tag(job_id), exc_info=True)
        return await self.get(job_id)

    # --- working ------------------------------------------------------------------------

    async def _work(self) -> None:
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

        written = await asyncio.to_thread(self.store.update, key(job_id, STATE), running)
        if written is None:
            return  # cancelled or deleted while it waited

        def scored_batch(seconds_per_tile: float) -> None:
            self._seconds_per_tile = 0.7 * self._seconds_per_tile + 0.3 * seconds_per_tile

        try:
            await self.runner.score(JobState.of(written), scored_batch)
            log.info("slide %s done in %.1f s", job_tag(job_id), time.time() - started)
        except asyncio.CancelledError:
            await self._finish(job_id, "cancelled", "The service shut down while scoring." if self._closed else None)
        except NotReady:
            await self._finish(job_id, "failed", "The service is shutting down; upload the slide again later.")
        except HealerError as error:
            await self._finish(job_id, "failed", error.message)
        except Exception:
            log.exception("slide %s failed", job_tag(job_id))
            await self._finish(job_id, "failed", HealerError.message)

    async def _finish(self, job_id: str, status: str, error: str | None) -> None:
        """Moves an unfinished job to `status` (no-op on a finished one); deletes its slide."""
        def finished(now: dict | None) -> dict | None:
            if now is None or now["status"] in FINISHED:
                return None
            return {**now, "status": status, "error": error, "finished": time.time()}

        written = await self._change(job_id, finished)
        if written is not None and written["owned_slide"]:
            await asyncio.to_thread(self.store.delete, written["slide"])

    async def _change(self, job_id: str, change) -> dict | None:
        return await asyncio.to_thread(self.store.update, key(job_id, STATE), change)

    async def _read(self, job_id: str) -> JobState:
        try:
            return JobState.of(await asyncio.to_thread(self.store.read_json, key(job_id, STATE)))
        except FileNotFoundError:
            raise SlideNotFound() from None

    async def _check(self, job: JobState) -> JobState:
        """An unfinished job whose scorer is gone is failed here, by whoever reads it first."""
        mine = job.id in self._running or job.id in self._waiting
        if job.runner != "cloud-run-job":
            if not mine and job.heartbeat is not None and time.time() - job.heartbeat > STALE_S:
                await self._finish(job.id, "failed", LOST)
                return await self._read(job.id)
            return job
        if not (job.execution and isinstance(self.runner, CloudRunRunner)):
            return job
        if time.monotonic() - self._checked.get(job.id, -math.inf) < EXECUTION_CHECK_S:
            return job
        self._checked[job.id] = time.monotonic()
        state = await self.runner.state(job.execution)
        if state == "running":
            return job
        final = await asyncio.to_thread(finish, self.store, job.id)  # a task may have died after its shard
        if final is None:
            await self._finish(job.id, "cancelled" if state == "cancelled" else "failed",
                               None if state == "cancelled" else TASKS_FAILED)
        return await self._read(job.id)

    def _queue_position(self, job_id: str) -> int | None:
        if job_id not in self._waiting:
            return None
        return self._waiting.index(job_id) + len(self._running)

    def _retry_after_s(self) -> int:
        return max(1, math.ceil(sum(self._tiles.values()) * self._seconds_per_tile))

    async def _heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            for job_id in [*self._waiting, *self._running]:
                await self._change(job_id, lambda now: None if now is None or now["status"] in FINISHED
                                   else {**now, "heartbeat": time.time()})

    # --- time to live -------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        interval = min(60.0, self.settings.slide_result_ttl_s / 4)
        while True:
            try:
                await self.sweep()
            except Exception:  # a store hiccup must not end the sweeping
                log.warning("slide sweep failed", exc_info=True)
            await asyncio.sleep(interval)

    async def sweep(self) -> None:
        """Deletes finished jobs older than SLIDE_RESULT_TTL_S, uploads abandoned as long, and
        fails jobs whose scorer is gone (they expire in turn)."""
        ttl, now = self.settings.slide_result_ttl_s, time.time()
        for job_id, written in (await asyncio.to_thread(self.store.job_ids)).items():
            try:
                job = await self._read(job_id)
            except SlideNotFound:
                if written < now - max(ttl, UPLOAD_GRACE_S):  # an upload never started, or a job half deleted
                    await asyncio.to_thread(self.store.delete_job, job_id)
                continue
            if job.status not in FINISHED:
                job = await self._check(job)
            if job.finished is not None and job.finished < now - ttl:
                await asyncio.to_thread(self.store.delete_job, job_id)
                log.info("slide %s expired: results deleted", job_tag(job_id))

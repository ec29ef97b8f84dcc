"""Slide jobs: accepted at once, scored one at a time in the background, kept on disk a while.

    queued ──▶ running ──▶ done
       │          ├──────▶ failed      (the slide's pixels unreadable, the service stopping)
       └──────────┴──────▶ cancelled   (DELETE, or shutdown)

Tiles go to the model in batches of SLIDE_BATCH_SIZE through `Batcher.run_batch`, which takes
turns with /predict batches on the model thread. Between batches the job's progress changes
and every event-stream listener is woken. Each job owns a directory under SLIDE_JOBS_DIR: the
uploaded slide (deleted once scored), the thumbnail, then the tiles and heatmaps; a finished
job's directory is deleted SLIDE_RESULT_TTL_S after it finished. Nothing here logs pixels,
file names or questions: only ids, counts and timings.
"""

import asyncio
import json
import logging
import math
import shutil
import signal
import tempfile
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from healer.batching import Batcher
from healer.engine import Query
from healer.errors import Busy, HealerError, NotReady, SlideNotFound
from healer.prompts import DISCLAIMER
from healer.schemas import ModelCard, SlideJob, SlideProgress, SlideTile, SlideTiles
from healer.settings import Settings
from healer.slides import heatmap
from healer.slides.plan import Plan
from healer.slides.summary import summarise
from healer.slides.tiling import read_tile
from healer.slides.wsi import open_slide

log = logging.getLogger(__name__)

FINISHED = ("done", "failed", "cancelled")
DEMO_NOTE = "Demo model (random weights): these colours are meaningless."
NOTE = "P(yes) per tile. Screening aid, not a diagnosis."


@dataclass
class Job:
    id: str
    directory: Path
    slide_path: Path
    question: str
    plan: Plan
    status: str = "queued"
    probabilities: list[float] = field(default_factory=list)
    started: float | None = None
    finished: float | None = None  # monotonic, for the TTL
    error: str | None = None
    summary: object = None
    task: asyncio.Task | None = None
    version: int = 0


class SlideJobs:
    """Create and `start()` inside the running event loop (the app's lifespan); `stop()` last."""

    def __init__(self, batcher: Batcher, settings: Settings, model: ModelCard):
        self.batcher = batcher
        self.settings = settings
        self.model = model
        self._owns_directory = settings.slide_jobs_dir is None
        self.directory = settings.slide_jobs_dir or Path(tempfile.mkdtemp(prefix="healer-slides-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self._jobs: dict[str, Job] = {}
        self._waiting: deque[Job] = deque()
        self._arrived = asyncio.Event()
        self._changed = asyncio.Condition()
        self._seconds_per_tile = 1.0  # refined by every batch; drives Retry-After
        self._tasks: list[asyncio.Task] = []
        self._closed = False
        self._streams_ended = False  # the server is stopping: event streams end now

    async def start(self) -> None:
        self._remove_leftovers()
        self._tasks = [asyncio.create_task(self._work(), name="slide-jobs"),
                       asyncio.create_task(self._sweep_forever(), name="slide-ttl")]
        self._end_streams_on_exit_signal()

    def _end_streams_on_exit_signal(self) -> None:
        """uvicorn waits for open responses to finish before it runs the lifespan's shutdown,
        and an event stream only ends with its job: without this, one open stream holds a
        SIGTERM for the whole grace period and is then cancelled mid-write. So the handler
        uvicorn installed for SIGTERM/SIGINT is wrapped: streams end first, then uvicorn's
        own handling. Only possible on the main thread (not under TestClient)."""
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(number)
            if not callable(previous):
                continue

            def handler(signum, frame, previous=previous):
                loop.call_soon_threadsafe(self._end_streams)
                previous(signum, frame)

            try:
                signal.signal(number, handler)
            except ValueError:  # not the main thread
                return

    def _end_streams(self) -> None:
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
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    # --- accepting ----------------------------------------------------------------------

    def check_room(self) -> None:
        """Busy (503, Retry-After) when the queue is full, before an upload is stored."""
        if self._closed:
            raise NotReady("The service is shutting down. Retry on another instance.")
        if len(self._waiting) >= self.settings.slide_queue:
            raise Busy(retry_after_s=self._retry_after_s())

    def new_directory(self) -> tuple[str, Path]:
        job_id = uuid.uuid4().hex  # unguessable: the id is the only key to a patient's results
        directory = self.directory / job_id
        directory.mkdir()
        return job_id, directory

    def accept(self, job_id: str, directory: Path, slide_path: Path, question: str, plan: Plan) -> Job:
        self.check_room()
        job = Job(job_id, directory, slide_path, question, plan)
        self._jobs[job_id] = job
        self._waiting.append(job)
        self._arrived.set()
        log.info("slide job %s queued: %d tiles", job_id, len(plan.tiles))
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

    def view(self, job: Job) -> SlideJob:
        done = job.status == "done"
        base = f"/slides/{job.id}"
        return SlideJob(
            id=job.id, status=job.status, question=job.question, slide=job.plan.info,
            progress=self._progress(job), summary=job.summary, error=job.error,
            heatmap_url=f"{base}/heatmap.png" if done else None,
            tiles_url=f"{base}/tiles" if done else None,
            expires_in_s=(
                round(max(0.0, job.finished + self.settings.slide_result_ttl_s - time.monotonic()), 1)
                if job.finished is not None else None
            ),
            model=self.model, disclaimer=DISCLAIMER,
        )

    def tiles(self, job: Job) -> SlideTiles:
        data = json.loads((job.directory / "tiles.json").read_text())
        return SlideTiles(
            id=job.id, width=job.plan.info.width, height=job.plan.info.height,
            threshold=self.settings.slide_threshold,
            tiles=[SlideTile(**tile) for tile in data], disclaimer=DISCLAIMER,
        )

    def heatmap_path(self, job: Job, legend: bool) -> Path:
        return job.directory / ("heatmap.png" if legend else "overlay.png")

    async def updates(self, job: Job, keepalive_s: float = 15) -> AsyncIterator[SlideJob | None]:
        """The job's state now and after every change, ending with a finished state; None
        when nothing changed for `keepalive_s` (the stream sends a comment to stay open)."""
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
            yield self.view(job)
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
            job.task = asyncio.create_task(self._run(job), name=f"slide-{job.id}")
            await asyncio.gather(job.task, return_exceptions=True)

    async def _run(self, job: Job) -> None:
        job.status, job.started = "running", time.monotonic()
        await self._notify(job)
        slide = reading = None
        try:
            slide = await asyncio.to_thread(open_slide, job.slide_path)
            size, tile_px = self.settings.slide_batch_size, self.settings.slide_tile_px
            for start in range(0, len(job.plan.tiles), size):
                batch = job.plan.tiles[start:start + size]
                reading = asyncio.ensure_future(
                    asyncio.to_thread(lambda: [read_tile(slide, tile, tile_px) for tile in batch])
                )
                images = await asyncio.shield(reading)
                began = time.perf_counter()
                generations = await self.batcher.run_batch(
                    [Query(image, job.question, explain=False) for image in images]
                )
                seconds = (time.perf_counter() - began) / len(batch)
                self._seconds_per_tile = 0.7 * self._seconds_per_tile + 0.3 * seconds
                job.probabilities.extend(round(g.p_yes, 6) for g in generations)
                await self._notify(job)
            await asyncio.to_thread(self._write_results, job)
            job.summary = summarise(job.probabilities, self.settings.slide_threshold, self.settings.slide_top_k)
            self._finish(job, "done", None)
            log.info("slide job %s done: %d tiles in %.1f s", job.id, len(job.probabilities),
                     time.monotonic() - job.started)
        except asyncio.CancelledError:
            self._finish(job, "cancelled", "The service shut down while scoring." if self._closed else None)
        except NotReady:
            self._finish(job, "failed", "The service is shutting down; upload the slide again later.")
        except HealerError as error:
            self._finish(job, "failed", error.message)
        except Exception:
            log.exception("slide job %s failed", job.id)
            self._finish(job, "failed", HealerError.message)
        finally:
            if reading is not None and not reading.done():
                await asyncio.wait([reading])  # a cancelled job's read ends before the slide closes
            if slide is not None:
                slide.close()
            job.slide_path.unlink(missing_ok=True)
            await self._notify(job)

    def _write_results(self, job: Job) -> None:
        plan, threshold = job.plan, self.settings.slide_threshold
        tiles = [
            {"x": t.x, "y": t.y, "size": t.size, "tissue": t.tissue, "probability": p}
            for t, p in zip(plan.tiles, job.probabilities)
        ]
        (job.directory / "tiles.json").write_text(json.dumps(tiles))
        tinted = heatmap.overlay(plan.thumbnail, (plan.info.width, plan.info.height), plan.tiles,
                                 job.probabilities, threshold)
        (job.directory / "overlay.png").write_bytes(heatmap.png(tinted))
        note = DEMO_NOTE if self.model.demo else NOTE
        (job.directory / "heatmap.png").write_bytes(heatmap.png(heatmap.with_legend(tinted, threshold, note)))
        job.plan = replace(plan, thumbnail=None)  # drawn; a finished job keeps nothing big in memory

    def _finish(self, job: Job, status: str, error: str | None) -> None:
        job.status, job.error, job.finished = status, error, time.monotonic()
        job.version += 1
        if status != "done":
            job.slide_path.unlink(missing_ok=True)

    def _progress(self, job: Job) -> SlideProgress:
        total, done = len(job.plan.tiles), len(job.probabilities)
        elapsed = (job.finished or time.monotonic()) - job.started if job.started else 0.0
        eta = None
        if job.status == "running" and done:
            eta = round(elapsed / done * (total - done), 1)
        elif job.status == "queued":
            eta = None
        position = None
        if job.status == "queued" and job in self._waiting:
            position = self._waiting.index(job) + sum(
                1 for other in self._jobs.values() if other.status == "running"
            )
        return SlideProgress(tiles_done=done, tiles_total=total, elapsed_s=round(elapsed, 1),
                             eta_s=eta, queue_position=position)

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
            log.info("slide job %s expired: results deleted", job.id)

    def _forget(self, job: Job) -> None:
        self._jobs.pop(job.id, None)
        shutil.rmtree(job.directory, ignore_errors=True)

    def _remove_leftovers(self) -> None:
        """Job directories a previous process left in SLIDE_JOBS_DIR, once past the TTL (their
        jobs died with that process; younger ones may belong to a sibling sharing the dir)."""
        expiry = time.time() - self.settings.slide_result_ttl_s
        for path in self.directory.iterdir():
            if path.is_dir() and path.name not in self._jobs and path.stat().st_mtime < expiry:
                shutil.rmtree(path, ignore_errors=True)

"""The life cycle of slide jobs, kept in the store so that every instance answers for every job.
SlideJobs is what the HTTP surface (healer/api/slides.py) holds; its verbs are the ones that
take several of these pieces, and it lends out the piece a single step needs:

    uploads.py      where a job's slide comes from (the key, a direct upload, a gs:// slide)
    work_queue.py   the jobs this instance scores itself: upload places, order, heartbeat
    transitions.py  a job's state read and changed by compare-and-swap, from any instance
    liveness.py     a job whose scorer is gone is failed by whoever reads it
    progress.py     what a reader sees: a snapshot, its progress, its changes as they come
    expiry.py       finished jobs and abandoned uploads deleted after SLIDE_RESULT_TTL_S

A job is accepted at once (its plan made, its state written), scored by the runner
(healer.slides.runner), followed through its state and shards, and cancelled from any instance.
This process keeps in memory only what it does itself: its queue. Nothing here logs pixels, file
names, questions or job ids: only `job_tag` hashes.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from healer.errors import NotReady, ResultsNotReady, SlideNotFound
from healer.logs import job_tag
from healer.screening.batching import Batcher
from healer.screening.schemas import ModelCard
from healer.settings import Settings
from healer.slides import expiry, heatmap
from healer.slides.liveness import Liveness
from healer.slides.plan import Plan
from healer.slides.progress import Snapshot, expires_in_s, updates
from healer.slides.work_queue import WorkQueue
from healer.slides.results import tiles_done
from healer.slides.runner import CloudRunRunner, make_runner
from healer.slides.state import FINISHED, STATE, THUMBNAIL, UPLOAD, JobState, key
from healer.slides.stores import open_store
from healer.slides.transitions import change_job, finish_job, read_job
from healer.slides.uploads import Uploads

log = logging.getLogger(__name__)


class SlideJobs:
    """Create and `start()` inside the running event loop (the app's lifespan); `stop()` last."""

    def __init__(self, batcher: Batcher, settings: Settings, model: ModelCard, runner=None):
        self.settings = settings
        self.model = model  # who answers, shown with every job
        self.store = open_store(settings.slide_store, settings.slide_store_mount)
        self.runner = runner or make_runner(settings, self.store, batcher)
        self.uploads = Uploads(self.store, settings.max_slide_bytes)
        self.queue = WorkQueue(self.store, self.runner, settings.slide_queue)
        self.liveness = Liveness(self.store, self.runner, self.queue)
        self._sweeping: asyncio.Task | None = None

    async def start(self) -> None:
        self._sweeping = asyncio.create_task(expiry.sweep_forever(self.liveness, self.settings.slide_result_ttl_s))
        if self.runner.queued:
            self.queue.start()

    async def stop(self) -> None:
        await self.queue.stop()
        if self._sweeping is not None:
            self._sweeping.cancel()
            await asyncio.gather(self._sweeping, return_exceptions=True)
        await asyncio.to_thread(self.store.close)

    async def accept(self, job_id: str, slide: str, owned: bool, question: str, plan: Plan) -> Snapshot:
        """Within `queue.reserve()`: the job is stored, and queued here or started on Cloud Run."""
        self.queue.refuse_if_closed()
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
            self.queue.add(job_id, len(plan.tiles))
            return await self.get(job_id)
        try:
            execution = await self.runner.start(job)
        except Exception:
            log.exception("slide %s: the Cloud Run Job did not start", job_tag(job_id))
            await finish_job(self.store, job_id, "failed", "The scoring job could not be started. Try again later.")
            raise NotReady("The slide scoring job could not be started. Try again later.") from None
        await change_job(self.store, job_id, lambda now: {**now, "status": "running", "started": time.time(),
                                                          "execution": execution})
        return await self.get(job_id)

    async def get(self, job_id: str) -> Snapshot:
        job = await read_job(self.store, job_id)
        if job.status not in FINISHED:
            job = await self.liveness.check(job)
        done = len(job.tiles) if job.status == "done" else await asyncio.to_thread(tiles_done, self.store, job)
        return Snapshot(job, done, self.queue.position(job_id))

    def updates(self, job_id: str) -> AsyncIterator[Snapshot]:
        """The job now and after every change, ending with a finished state (or its deletion)."""
        return updates(self.get, job_id)

    def expires_in_s(self, job: JobState) -> float | None:
        return expires_in_s(job, self.settings.slide_result_ttl_s)

    async def result(self, job_id: str, name: str) -> tuple[JobState, bytes]:
        """A result object of a done job (tiles.json, overlay.png, heatmap.png), with the job."""
        job = await read_job(self.store, job_id)
        if job.status != "done":
            raise ResultsNotReady()
        try:
            return job, await asyncio.to_thread(self.store.read, key(job_id, name))
        except FileNotFoundError:  # expired between the lookup and the read
            raise SlideNotFound() from None

    async def cancel(self, job_id: str) -> Snapshot:
        """Stops a queued or running job, wherever it runs; on a finished one, deletes its results."""
        snapshot = await self.get(job_id)
        job = snapshot.job
        if job.status in FINISHED:
            await asyncio.to_thread(self.store.delete_job, job_id)
            log.info("slide %s: results deleted on request", job_tag(job_id))
            return snapshot
        await finish_job(self.store, job_id, "cancelled", None)
        await self.queue.remove(job_id)
        if job.execution and isinstance(self.runner, CloudRunRunner):
            try:
                await self.runner.cancel(job.execution)
            except Exception:  # the tasks stop between batches anyway: they read the state
                log.warning("slide %s: the execution could not be cancelled", job_tag(job_id), exc_info=True)
        return await self.get(job_id)

    async def sweep(self) -> None:
        """What the sweep does every minute or so, now (tests, and an operator's shell)."""
        await expiry.sweep(self.liveness, self.settings.slide_result_ttl_s)

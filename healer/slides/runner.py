"""Who scores a slide job (SLIDE_RUNNER); every runner writes the same shards to the same store.

    local          this process, through the shared model's batcher: slide batches take turns
                   with /predict batches on the model thread, so a slide never starves single
                   images. One job at a time, in this instance's queue.
    processes      SLIDE_WORKERS processes on this machine, each `python -m healer.slides.worker
                   JOB_ID` with CLOUD_RUN_TASK_INDEX / COUNT: Cloud Run Jobs' contract, locally.
                   One job at a time; a failed task is run once more, as Cloud Run retries it.
    cloud-run-job  an execution of the Cloud Run Job SLIDE_CLOUD_RUN_JOB, one task per shard;
                   this instance only starts it, and any instance can follow or cancel it.

The first two are `queued` (the instance that accepted the job scores it, and says so by a
heartbeat in the job's state); the third is not.
"""

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable

from healer.errors import HealerError
from healer.logs import job_tag
from healer.screening.batching import Batcher
from healer.settings import Settings
from healer.slides.results import finish
from healer.slides.scoring import score_shard
from healer.slides.state import FINISHED, STATE, JobState, key, task_count
from healer.slides.store import Store

log = logging.getLogger(__name__)

TASK_ATTEMPTS = 2  # a local worker process that fails is run once more (Cloud Run: --max-retries)
# What a worker process must share with the service that starts it: the model and the reading
# limits. (A Cloud Run Job gets the same values from deploy.sh.)
WORKER_SETTINGS = ("model_dir", "model_id", "model_revision", "adapter_dir", "quantization", "device",
                   "max_new_tokens", "slide_store_mount", "slide_open_timeout_s", "slide_read_timeout_s",
                   "slide_reader_memory_mb", "log_level", "log_format")


def worker_env(settings: Settings, store: Store) -> dict[str, str]:
    env = {**os.environ, "SLIDE_STORE": store.url}
    for name in WORKER_SETTINGS:
        value = getattr(settings, name)
        if value is None:
            env.pop(name.upper(), None)
        else:
            env[name.upper()] = str(value)
    return env


class LocalRunner:
    queued = True

    def __init__(self, batcher: Batcher, settings: Settings, store: Store):
        self.batcher, self.settings, self.store = batcher, settings, store

    def task_count(self, tiles: int) -> int:
        return 1

    async def score(self, job: JobState, on_batch: Callable[[float], None]) -> None:
        if await score_shard(self.store, job, 0, 1, self.settings, self.batcher.run_batch, on_batch):
            await asyncio.to_thread(finish, self.store, job.id)


class ProcessRunner:
    queued = True

    def __init__(self, settings: Settings, store: Store):
        self.settings, self.store = settings, store

    def task_count(self, tiles: int) -> int:
        return task_count(tiles, self.settings.slide_batch_size, 1, self.settings.slide_workers)

    async def score(self, job: JobState, on_batch: Callable[[float], None]) -> None:
        results = await asyncio.gather(*(self._task(job, index) for index in range(job.task_count)),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        final = await asyncio.to_thread(finish, self.store, job.id)
        if final is None and not await asyncio.to_thread(self._gone_or_finished, job.id):
            raise HealerError("Scoring failed: a worker task stopped before its shard was complete.")

    def _gone_or_finished(self, job_id: str) -> bool:
        try:
            return self.store.read_json(key(job_id, STATE))["status"] in FINISHED
        except FileNotFoundError:
            return True

    async def _task(self, job: JobState, index: int) -> None:
        for attempt in range(TASK_ATTEMPTS):
            env = {**worker_env(self.settings, self.store), "CLOUD_RUN_TASK_INDEX": str(index),
                   "CLOUD_RUN_TASK_COUNT": str(job.task_count), "CLOUD_RUN_TASK_ATTEMPT": str(attempt)}
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "healer.slides.worker", job.id, env=env, start_new_session=True,
            )
            try:
                if await process.wait() == 0:
                    return
            except asyncio.CancelledError:
                _stop(process)
                await process.wait()
                raise
            log.warning("slide %s: task %d of %d failed (attempt %d)", job_tag(job.id), index, job.task_count,
                        attempt + 1)
        raise HealerError("Scoring failed: a worker task failed twice.")


def _stop(process: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class CloudRunRunner:
    queued = False

    def __init__(self, settings: Settings, job=None):
        from healer.slides.cloud_run import CloudRunJob  # the Admin API client loads only when used

        self.settings = settings
        self.job = job or CloudRunJob(settings.slide_cloud_run_job)

    def task_count(self, tiles: int) -> int:
        s = self.settings
        return task_count(tiles, s.slide_batch_size, s.slide_tiles_per_task, s.slide_max_tasks)

    async def start(self, job: JobState) -> str:
        """The execution's name; its tasks score the job."""
        return await asyncio.to_thread(self.job.run, job.id, job.task_count)

    async def cancel(self, execution: str) -> None:
        await asyncio.to_thread(self.job.cancel, execution)

    async def state(self, execution: str) -> str:
        return await asyncio.to_thread(self.job.state, execution)


def make_runner(settings: Settings, store: Store, batcher: Batcher):
    if settings.slide_runner == "processes":
        return ProcessRunner(settings, store)
    if settings.slide_runner == "cloud-run-job":
        return CloudRunRunner(settings)
    return LocalRunner(batcher, settings, store)

"""A job can lose its scorer: an instance scaled in or redeployed mid-job stops its heartbeat, a
Cloud Run execution can fail. Whoever reads such a job marks it failed, so a page never waits
forever (and the sweep expires it in turn)."""

import asyncio
import math
import time

from healer.slides.work_queue import WorkQueue
from healer.slides.results import finish
from healer.slides.runner import CloudRunRunner
from healer.slides.state import JobState
from healer.slides.store import Store
from healer.slides.transitions import finish_job, read_job

STALE_S = 60.0  # a queued or running local job whose heartbeat is older lost its instance
EXECUTION_CHECK_S = 30.0  # a Cloud Run execution's state is asked at most this often per job
LOST = "The instance scoring this slide stopped (a redeploy or a scale-in). Upload it again."
TASKS_FAILED = "Scoring failed: a worker task failed after its retries. Upload the slide again."


class Liveness:
    def __init__(self, store: Store, runner, queue: WorkQueue):
        self.store, self.runner, self.queue = store, runner, queue
        self._checked: dict[str, float] = {}  # when each execution's state was last asked

    async def check(self, job: JobState) -> JobState:
        """An unfinished job as it is now: failed here if its scorer is gone."""
        if job.runner != "cloud-run-job":
            if not self.queue.holds(job.id) and job.heartbeat is not None and time.time() - job.heartbeat > STALE_S:
                await finish_job(self.store, job.id, "failed", LOST)
                return await read_job(self.store, job.id)
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
            await finish_job(self.store, job.id, "cancelled" if state == "cancelled" else "failed",
                             None if state == "cancelled" else TASKS_FAILED)
        return await read_job(self.store, job.id)

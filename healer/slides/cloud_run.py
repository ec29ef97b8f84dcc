"""Scoring a slide on Cloud Run Jobs: one execution per slide, one task per shard of its tiles.

A service instance cannot score a slide of hundreds of tiles itself: its CPU is throttled between
requests and it may be scaled in mid-job. A Cloud Run Job runs the same image as the service
(deploy.sh deploys it with command `python`, args `-m healer.slides.worker`); the service starts
one execution per slide with two overrides, the task count and the job id appended to the args,
and each task scores its shard into the store (healer.slides.worker). Cloud Run retries a failed
task (`--max-retries`); this class only starts, cancels and reads executions.

    run(job_id, task_count) -> the execution's full name (returns without waiting for it)
    cancel(execution)       -> stops it; nothing to do when it has already finished or is gone
    state(execution)        -> "running" | "succeeded" | "failed" | "cancelled"

How an Execution (google.cloud.run.v2.Execution) reads as a state, from its proto's fields:
- `completion_time` unset: "running" (it is set once the execution has completed, whichever the
  outcome; a cancel in progress is still running);
- completed with `succeeded_count == task_count` (and at least one task): "succeeded";
- completed with `cancelled_count > 0`, or a condition whose `execution_reason` is CANCELLED:
  "cancelled";
- completed otherwise (a task failed its last retry, or Cloud Run could not run it): "failed".
An execution Cloud Run no longer knows (404) is "failed": it will never write the shards it owes.

Synchronous clients (the caller runs them with asyncio.to_thread). On Cloud Run they use the
service's default credentials; tests pass clients pointed at a local server.
"""

from google.api_core import exceptions
from google.cloud import run_v2

WORKER_ARGS = ["-m", "healer.slides.worker"]  # the deployed job's args; an override replaces them
_Overrides = run_v2.RunJobRequest.Overrides


class CloudRunJob:
    def __init__(self, job_name: str, jobs_client=None, executions_client=None):
        parts = job_name.split("/")
        if len(parts) != 6 or parts[::2] != ["projects", "locations", "jobs"] or not all(parts[1::2]):
            raise ValueError(f"SLIDE_CLOUD_RUN_JOB must be projects/PROJECT/locations/REGION/jobs/NAME,"
                             f" not {job_name!r}")
        self.job_name = job_name
        self._jobs = jobs_client or run_v2.JobsClient()
        self._executions = executions_client or run_v2.ExecutionsClient()

    def run(self, job_id: str, task_count: int) -> str:
        """Starts an execution of `task_count` tasks scoring `job_id`; returns its name."""
        overrides = _Overrides(task_count=task_count, container_overrides=[
            _Overrides.ContainerOverride(args=[*WORKER_ARGS, job_id])])
        operation = self._jobs.run_job(request=run_v2.RunJobRequest(name=self.job_name, overrides=overrides))
        # The long-running operation's metadata is the new Execution, there from the first answer.
        execution = operation.metadata
        if execution is None or not execution.name:
            raise RuntimeError(f"Cloud Run started {self.job_name} without naming the execution")
        return execution.name

    def cancel(self, execution: str) -> None:
        try:
            self._executions.cancel_execution(name=execution)
        except exceptions.NotFound:
            return
        except exceptions.ClientError:
            # Cancelling a finished execution is refused (the status code is not documented);
            # that refusal is harmless only if the execution has indeed finished.
            if self.state(execution) == "running":
                raise

    def state(self, execution: str) -> str:
        try:
            return execution_state(self._executions.get_execution(name=execution))
        except exceptions.NotFound:
            return "failed"


def execution_state(execution: run_v2.Execution) -> str:
    """The module docstring says why each field means what it does."""
    if "completion_time" not in execution:
        return "running"
    if execution.task_count > 0 and execution.succeeded_count == execution.task_count:
        return "succeeded"
    cancelled = run_v2.Condition.ExecutionReason.CANCELLED
    if execution.cancelled_count > 0 or any(c.execution_reason == cancelled for c in execution.conditions):
        return "cancelled"
    return "failed"

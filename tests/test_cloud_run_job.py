"""The Cloud Run Job runner, checked at the client's transport.

The real google-cloud-run clients (REST transport, anonymous credentials) talk plain HTTP to a
local server standing in for the Cloud Run Admin API: it records every request (method, path,
JSON body) and answers what the API documents (a long-running Operation whose metadata is the
new Execution; Executions as JSON). So these tests see the very request the service would send
to run.googleapis.com, and the client's own parsing of the answers.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2

from healer.slides.cloud_run import CloudRunJob, execution_state

JOB = "projects/p/locations/europe-west1/jobs/healer-slides"
EXECUTION = f"{JOB}/executions/healer-slides-x7k2p"
JOB_ID = "0123456789abcdef0123456789abcdef"


class FakeCloudRun:
    """Answers (method, path) from a table; records what it was sent."""

    def __init__(self):
        self.requests: list[dict] = []
        self.answers: dict[tuple[str, str], tuple[int, dict]] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                fake.requests.append({"method": self.command, "path": url.path,
                                      "body": json.loads(raw) if raw else None})
                status, body = fake.answers.get((self.command, url.path),
                                                (404, error(404, "NOT_FOUND", "no such resource")))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, method: str, path: str, body: dict, status: int = 200) -> None:
        self.answers[(method, path)] = (status, body)


def error(status: int, code: str, message: str) -> dict:
    return {"error": {"code": status, "status": code, "message": message}}


def operation(execution: dict | None) -> dict:
    answer = {"name": "projects/p/locations/europe-west1/operations/op-1", "done": False}
    if execution is not None:
        answer["metadata"] = {"@type": "type.googleapis.com/google.cloud.run.v2.Execution", **execution}
    return answer


# Executions as the API returns them, one per outcome.
TIMES = {"createTime": "2025-01-01T10:00:00Z", "startTime": "2025-01-01T10:00:05Z"}
DONE = {**TIMES, "completionTime": "2025-01-01T10:20:00Z"}
RUNNING = {"name": EXECUTION, "taskCount": 3, "runningCount": 2, "succeededCount": 1, **TIMES,
           "conditions": [{"type": "Completed", "state": "CONDITION_RECONCILING"}]}
SUCCEEDED = {"name": EXECUTION, "taskCount": 3, "succeededCount": 3, **DONE,
             "conditions": [{"type": "Completed", "state": "CONDITION_SUCCEEDED"}]}
FAILED = {"name": EXECUTION, "taskCount": 3, "succeededCount": 2, "failedCount": 1, "retriedCount": 1, **DONE,
          "conditions": [{"type": "Completed", "state": "CONDITION_FAILED", "executionReason": "NON_ZERO_EXIT_CODE",
                          "message": "Task healer-slides-x7k2p-task2 failed: the container exited with an error."}]}
CANCELLED = {"name": EXECUTION, "taskCount": 3, "succeededCount": 1, "cancelledCount": 2, **DONE,
             "conditions": [{"type": "Completed", "state": "CONDITION_FAILED", "executionReason": "CANCELLED"}]}


@pytest.fixture
def cloud_run():
    fake = FakeCloudRun()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def runner(cloud_run):
    options = {"api_endpoint": cloud_run.url}  # an http:// endpoint keeps its scheme in the REST transport
    return CloudRunJob(
        JOB,
        jobs_client=run_v2.JobsClient(transport="rest", client_options=options, credentials=AnonymousCredentials()),
        executions_client=run_v2.ExecutionsClient(transport="rest", client_options=options,
                                                  credentials=AnonymousCredentials()),
    )


def test_run_starts_the_job_with_the_task_count_and_the_job_id_after_the_worker_args(cloud_run, runner):
    cloud_run.answer("POST", f"/v2/{JOB}:run", operation({"name": EXECUTION, "taskCount": 7}))
    assert runner.run(JOB_ID, 7) == EXECUTION
    [request] = cloud_run.requests
    assert request["method"] == "POST" and request["path"] == f"/v2/{JOB}:run"
    assert request["body"]["overrides"] == {
        "taskCount": 7,
        "containerOverrides": [{"args": ["-m", "healer.slides.worker", JOB_ID]}],
    }


def test_run_without_an_execution_in_the_answer_is_an_error(cloud_run, runner):
    cloud_run.answer("POST", f"/v2/{JOB}:run", operation(None))
    with pytest.raises(RuntimeError, match="without naming the execution"):
        runner.run(JOB_ID, 1)


def test_run_refused_by_cloud_run_raises_its_error(cloud_run, runner):
    cloud_run.answer("POST", f"/v2/{JOB}:run", error(403, "PERMISSION_DENIED", "run.jobs.runWithOverrides"), 403)
    with pytest.raises(exceptions.Forbidden):
        runner.run(JOB_ID, 1)


def test_cancel_posts_to_the_execution(cloud_run, runner):
    cloud_run.answer("POST", f"/v2/{EXECUTION}:cancel", operation(RUNNING))
    runner.cancel(EXECUTION)
    assert [(r["method"], r["path"]) for r in cloud_run.requests] == [("POST", f"/v2/{EXECUTION}:cancel")]


def test_cancelling_an_execution_that_is_gone_is_not_an_error(cloud_run, runner):
    runner.cancel(EXECUTION)  # the fake answers 404 to anything it was not told about
    assert [r["path"] for r in cloud_run.requests] == [f"/v2/{EXECUTION}:cancel"]


def test_a_cancel_refused_because_the_execution_finished_is_not_an_error(cloud_run, runner):
    cloud_run.answer("POST", f"/v2/{EXECUTION}:cancel", error(400, "FAILED_PRECONDITION", "already done"), 400)
    cloud_run.answer("GET", f"/v2/{EXECUTION}", SUCCEEDED)
    runner.cancel(EXECUTION)
    assert [r["path"] for r in cloud_run.requests] == [f"/v2/{EXECUTION}:cancel", f"/v2/{EXECUTION}"]


def test_a_cancel_refused_while_the_execution_runs_raises(cloud_run, runner):
    cloud_run.answer("POST", f"/v2/{EXECUTION}:cancel", error(403, "PERMISSION_DENIED", "run.executions.cancel"), 403)
    cloud_run.answer("GET", f"/v2/{EXECUTION}", RUNNING)
    with pytest.raises(exceptions.Forbidden):
        runner.cancel(EXECUTION)


@pytest.mark.parametrize("execution, state", [
    (RUNNING, "running"), (SUCCEEDED, "succeeded"), (FAILED, "failed"), (CANCELLED, "cancelled"),
])
def test_state_reads_the_execution(cloud_run, runner, execution, state):
    cloud_run.answer("GET", f"/v2/{EXECUTION}", execution)
    assert runner.state(EXECUTION) == state
    assert [(r["method"], r["path"]) for r in cloud_run.requests] == [("GET", f"/v2/{EXECUTION}")]


def test_an_execution_cloud_run_no_longer_knows_is_failed(runner):
    assert runner.state(EXECUTION) == "failed"


@pytest.mark.parametrize("fields, state", [
    # Cancelling, not yet stopped: the tasks may still be writing.
    ({"taskCount": 3, "runningCount": 2, "conditions": [{"type": "Completed", "executionReason": "CANCELLING"}]},
     "running"),
    # Cancelled before any task started: no task counts, only the condition says so.
    ({"taskCount": 3, **DONE, "conditions": [{"type": "Completed", "executionReason": "CANCELLED"}]}, "cancelled"),
    ({"taskCount": 3, "succeededCount": 2, "cancelledCount": 1, **DONE}, "cancelled"),
    # Every task succeeded, whatever a late cancel said.
    ({"taskCount": 2, "succeededCount": 2, **DONE, "conditions": [{"executionReason": "CANCELLING"}]},
     "succeeded"),
    ({"taskCount": 2, "succeededCount": 1, **DONE}, "failed"),
    ({**DONE}, "failed"),  # completed with no task at all: nothing was scored
])
def test_execution_fields_map_to_a_state(fields, state):
    assert execution_state(run_v2.Execution.from_json(json.dumps(fields))) == state


@pytest.mark.parametrize("name", ["healer-slides", "projects/p/locations/r/jobs/", "projects/p/regions/r/jobs/j"])
def test_a_job_name_that_is_not_a_full_resource_name_is_refused(name):
    with pytest.raises(ValueError, match="projects/PROJECT/locations/REGION/jobs/NAME"):
        CloudRunJob(name, jobs_client=object(), executions_client=object())

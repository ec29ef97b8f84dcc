"""What any instance does for jobs it does not score itself: fail the ones whose scorer is gone,
expire old results and abandoned uploads. The store is a directory both instances would share."""

import json
import os
import time

import pytest
from fastapi.testclient import TestClient

from healer.api.app import create_app
from healer.model.fake import FakeEngine
from healer.settings import Settings
from healer.slides.expiry import UPLOAD_GRACE_S
from healer.slides.liveness import LOST, STALE_S
from healer.slides.state import JobState

JOB = "1" * 32


def write_job(root, heartbeat_age_s: float | None = None, **fields) -> None:
    info = {"width": 100, "height": 100, "levels": 1, "vendor": None, "mpp": None, "tile_mpp": None,
            "tile_size": 64, "tile_px": 64}
    job = JobState(id=JOB, question="q", info=info, tiles=[[0, 0, 64, 1.0]], slide=f"{JOB}/slide.svs",
                   owned_slide=True, runner="local", task_count=1, batch_size=4, demo=True, threshold=0.5,
                   top_k=5, min_answer_mass=0.5, status="running", started=time.time(),
                   heartbeat=None if heartbeat_age_s is None else time.time() - heartbeat_age_s, **fields)
    (root / JOB).mkdir(parents=True, exist_ok=True)
    (root / JOB / "state.json").write_text(json.dumps(job.to_json()))


@pytest.fixture
def instance(tmp_path):
    with TestClient(create_app(Settings(model_dir=tmp_path, slide_store=str(tmp_path / "store")),
                               engine=FakeEngine())) as client:
        yield client, tmp_path / "store"


def test_a_job_whose_scoring_instance_went_silent_is_failed_by_whoever_reads_it(instance):
    client, root = instance
    write_job(root, heartbeat_age_s=STALE_S + 5)
    job = client.get(f"/slides/{JOB}").json()
    assert job["status"] == "failed" and job["error"] == LOST
    assert json.loads((root / JOB / "state.json").read_text())["status"] == "failed"  # for everyone


def test_a_job_whose_scoring_instance_is_alive_keeps_running(instance):
    client, root = instance
    write_job(root, heartbeat_age_s=1)
    assert client.get(f"/slides/{JOB}").json()["status"] == "running"


def _age(path, seconds: float) -> None:
    then = time.time() - seconds
    for file in path.rglob("*"):
        os.utime(file, (then, then))


def test_the_sweep_keeps_a_slow_upload_for_a_day_then_deletes_it(instance):
    client, root = instance
    (root / JOB).mkdir(parents=True)
    (root / JOB / "upload.json").write_text('{"slide": "x", "size": 1}')
    _age(root / JOB, 2 * 3600)  # past SLIDE_RESULT_TTL_S (1 h), within a day
    client.portal.call(client.app.state.slide_jobs.sweep)
    assert (root / JOB / "upload.json").exists()
    _age(root / JOB, UPLOAD_GRACE_S + 60)
    client.portal.call(client.app.state.slide_jobs.sweep)
    assert not (root / JOB).exists()


def test_the_sweep_deletes_finished_jobs_past_the_ttl_on_any_instance(instance):
    client, root = instance
    write_job(root, heartbeat_age_s=1, finished=time.time() - 3700)
    state = json.loads((root / JOB / "state.json").read_text())
    (root / JOB / "state.json").write_text(json.dumps({**state, "status": "done"}))
    client.portal.call(client.app.state.slide_jobs.sweep)
    assert not (root / JOB).exists()

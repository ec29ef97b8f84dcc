"""A real server process with a slide job running and an event stream open: SIGTERM stops
both cleanly, exits 0, and leaves no slide or result behind."""

import os
import signal
import threading
import time

import httpx

from healer.tools.live_server import live_server
from tests.slide_files import cmu_svs


def test_sigterm_during_a_slide_job_exits_cleanly_and_deletes_its_files(demo_model_dir, tmp_path):
    jobs_dir = tmp_path / "jobs"
    env = {"MODEL_DIR": str(demo_model_dir), "QUANTIZATION": "none", "SLIDE_JOBS_DIR": str(jobs_dir),
           "SLIDE_TILE_PX": "64", "SLIDE_BATCH_SIZE": "1", "HEALER_TEST_LOG": str(tmp_path)}
    with live_server(env) as (url, process):
        with open(cmu_svs(), "rb") as slide:
            job = httpx.post(url + "/slides", files={"slide_file": ("cmu.svs", slide)}, timeout=60).json()
        events: list[str] = []

        def listen():
            with httpx.stream("GET", f"{url}/slides/{job['id']}/events", timeout=60) as stream:
                events.extend(line for line in stream.iter_lines() if line.startswith("event: "))

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/slides/{job['id']}").json()["progress"]["tiles_done"] < 2:
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.1)
        assert any(jobs_dir.iterdir())

        started = time.monotonic()
        os.killpg(process.pid, signal.SIGTERM)
        code = process.wait(timeout=30)
        seconds = time.monotonic() - started
        listener.join(timeout=5)
        log = process.log_path.read_text()

    assert code == 0, log
    assert seconds < 15, f"shutdown took {seconds:.1f} s"  # SHUTDOWN_GRACE_S is 10 s
    assert list(jobs_dir.iterdir()) == []
    assert "Traceback" not in log, log
    assert events and events[0] == "event: progress"

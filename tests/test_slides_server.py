"""A real server process with a slide job running and an event stream open: SIGTERM ends the
stream at once (its client reconnects to another instance), stops the job cleanly, exits 0,
deletes the slide and leaves the job cancelled in the store for the other instances to report."""

import json
import os
import signal
import socket
import sys
import threading
import time

import httpx

from healer.logs import job_tag
from healer.tools.live_server import live_server
from tests.slide_files import cmu_svs


def test_sigterm_during_a_slide_job_exits_cleanly_and_leaves_it_cancelled_without_its_slide(demo_model_dir, tmp_path):
    jobs_dir = tmp_path / "jobs"
    env = {"MODEL_DIR": str(demo_model_dir), "QUANTIZATION": "none", "SLIDE_STORE": str(jobs_dir),
           "SLIDE_TILE_PX": "64", "SLIDE_BATCH_SIZE": "1", "HEALER_TEST_LOG": str(tmp_path)}
    with live_server(env) as (url, process):
        with open(cmu_svs(), "rb") as slide:
            job = httpx.post(url + "/slides", files={"slide_file": ("cmu.svs", slide)}, timeout=60).json()
        events: list[str] = []
        ended: list[float] = []

        def listen():
            with httpx.stream("GET", f"{url}/slides/{job['id']}/events", timeout=60) as stream:
                events.extend(line for line in stream.iter_lines() if line.startswith("event: "))
            ended.append(time.monotonic())

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
    left = sorted(p.name for p in (jobs_dir / job["id"]).iterdir() if not p.name.startswith("."))
    assert left == ["shards", "state.json", "thumbnail.png"]  # the slide is gone; the state tells others
    state = json.loads((jobs_dir / job["id"] / "state.json").read_text())
    assert state["status"] == "cancelled" and state["error"] == "The service shut down while scoring."
    assert "Traceback" not in log, log
    assert events and events[0] == "event: progress"
    assert ended and ended[0] - started < 3, "the event stream held the shutdown up"


def test_slide_job_ids_never_reach_the_server_log(tmp_path):
    """The id is the only key to a job's results: the log shows a short hash of it, on every
    line (queued, done, access lines, a refused request), and never the id itself."""
    env = {"MODEL_DIR": str(tmp_path), "FAKE_DELAY_S": "0", "SLIDE_TILE_PX": "64",
           "SLIDE_STORE": str(tmp_path / "jobs"), "HEALER_TEST_LOG": str(tmp_path), "LOG_LEVEL": "info"}
    unknown = "0123456789abcdef0123456789abcdef"
    with live_server(env, command=[sys.executable, "-m", "tests.slow_server"]) as (url, process):
        with open(cmu_svs(), "rb") as slide:
            job = httpx.post(url + "/slides", files={"slide_file": ("cmu.svs", slide)}, timeout=60).json()
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/slides/{job['id']}").json()["status"] != "done":
            assert time.monotonic() < deadline, "the job never finished"
            time.sleep(0.1)
        assert httpx.get(f"{url}/slides/{job['id']}/tiles").status_code == 200
        assert httpx.get(f"{url}/slides/{unknown}").status_code == 404
        assert httpx.delete(f"{url}/slides/{job['id']}").status_code in (200, 204)
        log = process.log_path.read_text()
    assert job["id"] not in log and unknown not in log, log
    assert job_tag(job["id"]) in log and job_tag(unknown) in log, log


def start_upload(url: str, declared_bytes: int) -> socket.socket:
    """A slide upload over a raw socket that sends its headers and the form's first bytes, then
    stalls, as a slow client on a large slide does."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(b"POST /slides HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                 b"Content-Length: %d\r\n\r\n" % declared_bytes)
    sock.sendall(b'--b\r\nContent-Disposition: form-data; name="slide_file"; filename="s.svs"\r\n\r\n' + b"x" * 65536)
    return sock


def test_a_full_slide_queue_refuses_an_upload_before_reading_its_body(tmp_path):
    """SLIDE_QUEUE=1 and one upload still streaming in holds that place: the next upload is
    answered 503 while its client has sent 64 KiB of a declared 50 MB."""
    env = {"MODEL_DIR": str(tmp_path), "FAKE_DELAY_S": "0", "SLIDE_QUEUE": "1",
           "SLIDE_STORE": str(tmp_path / "jobs"), "HEALER_TEST_LOG": str(tmp_path)}
    with live_server(env, command=[sys.executable, "-m", "tests.slow_server"]) as (url, process):
        first = start_upload(url, 50_000_000)
        time.sleep(0.5)  # the first holds the only place while its body streams in
        second = start_upload(url, 50_000_000)
        second.settimeout(5)
        answer = second.recv(4096)  # times out if the server waits for the body first
        while answer.startswith(b"HTTP/1.1 503") and b"}" not in answer:
            answer += second.recv(4096)  # the JSON body may come in its own packet
        first.close(), second.close()
    assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
    assert b'"busy"' in answer and b"retry-after" in answer.lower()

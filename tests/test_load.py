"""Under load, against real server processes on loopback: refuse early, lose nothing, stay small.

Bounded: a fixed number of requests per test, every one with a timeout.
"""

import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from healer.tools.live_server import live_server


def rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def fire(url: str, image: bytes, count: int, concurrency: int) -> list[tuple[str, httpx.Response]]:
    def one(i: int):
        question = f"Load test request {i}?"
        with httpx.Client(timeout=60) as client:
            response = client.post(url + "/predict", files={"image_file": ("t.png", image)},
                                   data={"question": question})
        return question, response

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(count)))


def check_round(results):
    """Every request got its own answer or an immediate, well-formed refusal; nothing else."""
    ok = [(q, r) for q, r in results if r.status_code == 200]
    busy = [r for _, r in results if r.status_code == 503]
    assert len(ok) + len(busy) == len(results), {r.status_code for _, r in results}
    assert all(r.json()["question"] == q for q, r in ok)  # answers are not swapped or duplicated
    assert all(r.json()["error"] == "busy" and int(r.headers["retry-after"]) >= 1 for r in busy)
    return ok, busy


def test_overload_is_refused_with_retry_after_and_every_accepted_request_succeeds(tmp_path, he_tile_png):
    env = {"FAKE_DELAY_S": "0.4", "MAX_BATCH_SIZE": "2", "MAX_QUEUE": "4", "CACHE_SIZE": "0",
           "MODEL_DIR": str(tmp_path), "LOG_LEVEL": "warning", "HEALER_TEST_LOG": str(tmp_path)}
    with live_server(env, command=[sys.executable, "-m", "tests.slow_server"]) as (url, process):
        started = time.perf_counter()
        ok, busy = check_round(fire(url, he_tile_png, count=40, concurrency=20))
        elapsed = time.perf_counter() - started
        memory = [rss_mib(process.pid)]
        for _ in range(3):
            check_round(fire(url, he_tile_png, count=40, concurrency=20))
            memory.append(rss_mib(process.pid))
        print("RSS MiB after each round:", memory)
    assert busy, "20 concurrent clients against a queue of 4 must be refused in part"
    assert len(ok) >= 6
    # Refusals are immediate: the whole round takes about as long as the accepted work alone.
    assert elapsed < (len(ok) / 2) * 0.4 * 3 + 5
    # Bounded: after the first burst has sized the allocator's pools, more load adds nothing.
    assert memory[-1] - memory[1] < 50, memory


def test_the_demo_model_under_concurrent_load(demo_model_dir, tmp_path, he_tile_png):
    env = {"MODEL_DIR": str(demo_model_dir), "QUANTIZATION": "none", "MAX_QUEUE": "3",
           "MAX_BATCH_SIZE": "4", "BATCH_WAIT_MS": "20", "CACHE_SIZE": "0", "LOG_LEVEL": "warning",
           "HEALER_TEST_LOG": str(tmp_path)}
    with live_server(env) as (url, process):
        ok, busy = check_round(fire(url, he_tile_png, count=24, concurrency=12))
        batches = [line for line in httpx.get(url + "/metrics").text.splitlines()
                   if line.startswith("healer_batch_size_bucket")]
    assert ok and busy
    assert 'le="1.0"} ' in batches[0]
    one_per_batch = float(batches[0].rsplit(" ", 1)[1])
    total = float(next(b for b in batches if 'le="+Inf"' in b).rsplit(" ", 1)[1])
    assert one_per_batch < total, "concurrent requests were never batched together"


def test_sigterm_finishes_the_request_in_flight_then_exits_0(tmp_path, he_tile_png):
    env = {"FAKE_DELAY_S": "2", "SHUTDOWN_GRACE_S": "10", "MODEL_DIR": str(tmp_path),
           "HEALER_TEST_LOG": str(tmp_path)}
    with live_server(env, command=[sys.executable, "-m", "tests.slow_server"]) as (url, process):
        result = {}
        request = threading.Thread(target=lambda: result.update(
            response=httpx.post(url + "/predict", files={"image_file": ("t.png", he_tile_png)}, timeout=30)))
        request.start()
        deadline = time.monotonic() + 10
        while "healer_queue_depth 1.0" not in httpx.get(url + "/metrics").text:
            assert time.monotonic() < deadline, "the request never reached the engine"
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGTERM)
        request.join(timeout=30)
        exit_code = process.wait(timeout=30)
    assert result["response"].status_code == 200
    assert exit_code == 0

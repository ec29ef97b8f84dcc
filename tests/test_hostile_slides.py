"""Hostile slide files against a real server process: each is refused with a 4xx in seconds,
the health check keeps answering in milliseconds meanwhile, and nothing is left on disk."""

import sys
import threading
import time

import httpx
import pytest

from healer.tools.live_server import live_server
from tests.hostile_slides import CORPUS

REFUSED = {  # what each file is answered with
    "huge_claim": (413, "slide_too_large"), "thousands_of_levels": (413, "slide_too_large"),
    "ifd_loop": (400, "corrupt_slide"), "one_pixel_tiles": (413, "slide_too_large"),
    "giant_tiles": (413, "slide_too_large"), "zero_sized_level": (400, "corrupt_slide"),
    "truncated": (400, "corrupt_slide"), "corrupt_tiles": (400, "corrupt_slide"),
    "jpeg_bomb": (413, "slide_too_large"), "header_on_garbage": (400, "corrupt_slide"),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    jobs_dir = tmp / "jobs"
    env = {"MODEL_DIR": str(tmp), "FAKE_DELAY_S": "0", "SLIDE_STORE": str(jobs_dir), "HEALER_TEST_LOG": str(tmp)}
    with live_server(env, command=[sys.executable, "-m", "tests.slow_server"]) as (url, process):
        yield url, jobs_dir, tmp


@pytest.mark.parametrize("name", CORPUS)
def test_a_hostile_slide_is_refused_in_seconds_while_the_health_check_answers(server, name):
    url, jobs_dir, tmp = server
    path = CORPUS[name](tmp / f"{name}.tif")
    health: list[float] = []
    done = threading.Event()

    def probe():
        with httpx.Client(timeout=5) as client:
            while not done.is_set():
                began = time.perf_counter()
                assert client.get(url + "/").status_code == 200
                health.append(time.perf_counter() - began)
                time.sleep(0.02)

    prober = threading.Thread(target=probe)
    prober.start()
    began = time.perf_counter()
    with open(path, "rb") as slide:
        response = httpx.post(url + "/slides", files={"slide_file": (f"{name}.tif", slide)}, timeout=60)
    seconds = time.perf_counter() - began
    done.set()
    prober.join()

    assert (response.status_code, response.json()["error"]) == REFUSED[name], response.text
    assert seconds < 5, f"{name} took {seconds:.1f} s"
    assert health and max(health) < 0.5, f"GET / took up to {max(health) * 1000:.0f} ms"
    assert list(jobs_dir.iterdir()) == []  # a refused upload leaves nothing behind

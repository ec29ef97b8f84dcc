"""The slide reader's child process: a hung read is killed at its deadline, a cancelled caller
kills it at once, and a real server's cancel and SIGTERM never wait on a hung read."""

import asyncio
import json
import os
import signal
import sys
import time

import httpx
import pytest

from healer.errors import BadSlide, SlideReadTimeout, SlideTooLarge
from healer.slides.reader import SlideReader
from healer.slides.tiling import Tile
from healer.tools.live_server import live_server
from tests.hostile_slides import TILE, tiled_tiff
from tests.slide_files import cmu_svs


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return open(f"/proc/{pid}/stat").read().split()[2] != "Z"


def test_a_read_that_never_answers_is_killed_at_its_deadline(tmp_path):
    fifo = tmp_path / "slide.svs"
    os.mkfifo(fifo)  # opening it blocks until a writer comes: none will

    async def read():
        async with SlideReader(open_timeout_s=1, read_timeout_s=1, memory_mb=1024) as reader:
            pid = reader.pid
            began = time.monotonic()
            with pytest.raises(SlideReadTimeout):
                await reader.open(fifo, 2048)
            return pid, time.monotonic() - began

    pid, seconds = asyncio.run(read())
    assert 1 <= seconds < 3
    assert not alive(pid)


def test_cancelling_a_hung_read_kills_the_child_at_once(tmp_path):
    fifo = tmp_path / "slide.svs"
    os.mkfifo(fifo)

    async def read():
        reader = SlideReader(open_timeout_s=60, read_timeout_s=60, memory_mb=1024)
        await reader.__aenter__()
        task = asyncio.create_task(reader.open(fifo, 2048))
        await asyncio.sleep(0.5)
        began = time.monotonic()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return reader, time.monotonic() - began

    reader, seconds = asyncio.run(read())
    assert seconds < 1
    assert reader.pid is None  # closed: its process is gone


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_real_server_cancels_and_stops_while_a_slide_read_hangs(tmp_path):
    """Job A keeps the worker busy; B and C wait. Their slides are swapped for FIFOs, so when
    each starts, its open hangs. DELETE B and then SIGTERM (C hanging) both finish at once."""
    jobs_dir = tmp_path / "jobs"
    env = {"MODEL_DIR": str(tmp_path), "FAKE_DELAY_S": "0.5", "SLIDE_STORE": str(jobs_dir),
           "SLIDE_TILE_PX": "64", "SLIDE_BATCH_SIZE": "1", "SLIDE_OPEN_TIMEOUT_S": "60",
           "HEALER_TEST_LOG": str(tmp_path)}
    with live_server(env, command=[sys.executable, "-m", "tests.slow_server"]) as (url, process):
        ids = []
        for _ in range(3):
            with open(cmu_svs(), "rb") as slide:
                ids.append(httpx.post(url + "/slides", files={"slide_file": ("s.svs", slide)}, timeout=60).json()["id"])
        a, b, c = ids
        for job in (b, c):
            (path,) = (jobs_dir / job).glob("slide*")
            path.unlink()
            os.mkfifo(path)
        httpx.delete(f"{url}/slides/{a}")
        wait_for(lambda: httpx.get(f"{url}/slides/{b}").json()["status"] == "running", 10, "B never started")
        time.sleep(0.5)  # B's reader is now blocked opening the FIFO

        began = time.monotonic()
        assert httpx.get(url + "/", timeout=1).status_code == 200
        cancelled = httpx.delete(f"{url}/slides/{b}", timeout=10).json()
        assert cancelled["status"] == "cancelled"
        assert time.monotonic() - began < 2

        wait_for(lambda: httpx.get(f"{url}/slides/{c}").json()["status"] == "running", 10, "C never started")
        time.sleep(0.5)
        began = time.monotonic()
        os.killpg(process.pid, signal.SIGTERM)
        code = process.wait(timeout=30)
        seconds = time.monotonic() - began
        log = process.log_path.read_text()
    assert code == 0, log
    assert seconds < 5, f"shutdown took {seconds:.1f} s with a read hanging"
    assert not list(jobs_dir.glob("*/slide*"))  # every slide deleted; the states say cancelled
    assert {json.loads((jobs_dir / job / "state.json").read_text())["status"] for job in ids} == {"cancelled"}


def test_a_read_that_needs_more_memory_than_the_cap_is_refused_not_hung(tmp_path):
    """A 12,000 × 12,000 slide (one level, one tile stored) asked for as one tile: OpenSlide
    needs ~550 MiB for the region; the child's 400 MiB cap makes that a clear error."""
    slide = tiled_tiff(tmp_path / "flat.tif", 12_000, 12_000, (256, 256), TILE.tobytes())

    async def read():
        async with SlideReader(open_timeout_s=10, read_timeout_s=30, memory_mb=400) as reader:
            await reader.open(slide, 2048)
            began = time.monotonic()
            with pytest.raises((SlideTooLarge, BadSlide)) as refused:
                await reader.tiles([Tile(0, 0, 12_000, 0.0)], 224)
            return refused.value, time.monotonic() - began

    error, seconds = asyncio.run(read())
    assert error.status in (400, 413)
    assert seconds < 10

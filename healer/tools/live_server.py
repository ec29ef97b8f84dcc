"""Start the real service as a separate process on a free loopback port, and stop it."""

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_server(env: dict[str, str], command: list[str] | None = None, timeout_s: float = 120):
    """Yields (base_url, process); output goes to a log file the test can read on failure."""
    port = free_port()
    log_path = Path(env.get("HEALER_TEST_LOG", "/tmp")) / f"healer-server-{port}.log"
    full_env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), **env}
    full_env.pop("HF_TOKEN", None), full_env.pop("MY_HF_TOKEN", None)
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command or [sys.executable, "main.py"], cwd=ROOT, env=full_env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                if httpx.get(base_url + "/", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready in {timeout_s} s:\n{log_path.read_text()}")
            time.sleep(0.2)
        process.log_path = log_path
        yield base_url, process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

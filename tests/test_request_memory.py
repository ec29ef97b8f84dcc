"""Against a real server process: the worst images /predict accepts stay within the memory
docs/operations.md states, a whole slide is sent to /slides, and a too-large body over a real
socket is answered 413 before the client has sent it all."""

import io
import re
import select
import socket
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from healer.tools.live_server import live_server
from tests.slide_files import cmu_svs

SIDE = 9459  # 89.47 Mpx: just under MAX_IMAGE_PIXELS' default
OPERATIONS = Path(__file__).resolve().parents[1] / "docs" / "operations.md"


def stated_peak_mib() -> int:
    return int(re.search(r"peak RSS of the server answering them: \*\*(\d+) MiB\*\*", OPERATIONS.read_text())[1])


def encode(image: Image.Image, format: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **params)
    return buffer.getvalue()


def worst_images() -> dict[str, bytes]:
    gradient = np.tile(np.arange(SIDE, dtype=np.uint16) * 6, (SIDE, 1))
    rgb = Image.new("RGB", (SIDE, SIDE), (200, 120, 170))
    return {
        "16-bit grey PNG": encode(Image.fromarray(gradient), "PNG"),
        "RGBA PNG": encode(rgb.convert("RGBA"), "PNG"),
        "palette PNG": encode(rgb.convert("P"), "PNG"),
        "CMYK JPEG": encode(rgb.convert("CMYK"), "JPEG"),
        "progressive JPEG": encode(rgb, "JPEG", progressive=True, subsampling=0),
        # libjpeg holds a progressive image's every coefficient (2 bytes a sample, whatever the
        # draft scale): with four full-resolution channels, the costliest image accepted.
        "progressive CMYK JPEG": encode(rgb.convert("CMYK"), "JPEG", progressive=True),
    }


def vm_hwm_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("memory")
    env = {"MODEL_DIR": str(tmp), "FAKE_DELAY_S": "0", "CACHE_SIZE": "0", "HEALER_TEST_LOG": str(tmp),
           "MAX_UPLOAD_MB": "20"}
    with live_server(env, command=[sys.executable, "-m", "tests.slow_server"]) as (url, process):
        yield url, process


def test_the_worst_accepted_images_stay_within_the_stated_memory(server):
    url, process = server
    images = worst_images()
    with httpx.Client(timeout=120) as client:
        for name, data in images.items():
            response = client.post(url + "/predict", files={"image_file": ("x", data)}, data={"explain": "false"})
            assert response.status_code == 200, (name, response.text)
    peak = vm_hwm_mib(process.pid)
    print(f"peak RSS {peak:.0f} MiB")
    assert peak <= stated_peak_mib(), f"peak RSS {peak:.0f} MiB"


def test_a_whole_slide_posted_to_predict_is_sent_to_slides(server):
    url, _ = server
    response = httpx.post(url + "/predict", files={"image_file": ("s.svs", cmu_svs().read_bytes())}, timeout=30)
    assert response.status_code == 415
    assert response.json()["error"] == "whole_slide_image"
    assert "/slides" in response.json()["detail"]


def test_a_too_large_chunked_body_is_refused_before_it_is_all_sent(server):
    url, _ = server
    host, port = url.removeprefix("http://").split(":")
    chunk = b"x" * 65536
    sent = 0
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Type: multipart/form-data; boundary=b\r\n\r\n")
        head = b'--b\r\nContent-Disposition: form-data; name="image_file"; filename="x.png"\r\n\r\n'
        sock.sendall(b"%x\r\n" % len(head) + head + b"\r\n")
        answer = b""
        try:
            while sent < 200 * 1024 * 1024 and not answer:  # ten times MAX_UPLOAD_MB
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
                if select.select([sock], [], [], 0)[0]:
                    answer = sock.recv(4096)
        except (BrokenPipeError, ConnectionResetError):
            answer = sock.recv(4096)  # the server closed the connection after answering
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    # The answer comes while the client is still sending, a little past MAX_UPLOAD_MB (20 MiB).
    assert sent < 40 * 1024 * 1024, f"the client sent {sent / 2**20:.0f} MiB before the 413 came"

"""Builds the real Dockerfile, runs the image, and checks what a Cloud Run deploy would rely on.

The set-up, all local because Docker Hub, Hugging Face and PyTorch's index are unreachable here:

- Docker: Debian's `docker.io` (installed with apt when missing) and a `dockerd` this module
  starts itself, with its data root in `.build/docker/` (kept between runs as the build cache)
  and no bridge or iptables changes (`--network=host` everywhere). It is stopped at the end,
  by its PID. `/usr/bin/docker` with BuildKit: the `docker` first on PATH has no buildx.
- Base images: `python:3.11-slim` made with debootstrap and `node:20-slim` from this host's
  Node.js (tests/container/base_images.sh), each made once and cached.
- Weights: the tiny demo model, served by tests/fake_hub.py on the host as a *gated* repo.
  The Dockerfile is built unchanged: `HF_ENDPOINT` and `MODEL_ID` are build args, the token is
  a BuildKit secret read from an environment variable (as cloudbuild.yaml passes it), and
  `download.py` fetches the weights in the build as it would MedGemma.
- torch: this machine's CPU wheel, served as a PEP 503 index on loopback (`TORCH_INDEX_URL`).

Then the image runs; the test waits for `GET /`, posts a real H&E image, and checks that the
token is in no layer (`docker save`), not in `docker history`, not in the image config, that
the server is not root, and that the CPU image carries no CUDA.

It skips only when it truly cannot run (not root, or no apt to install Docker), and says why.
Build logs: .build/logs/. Cold: ~3-4 min (pip installs); warm: about a minute.
"""

import contextlib
import functools
import http.server
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from fake_hub import COMMIT, FakeHub  # noqa: E402

BUILD = ROOT / ".build"
DOCKER = "/usr/bin/docker"
DOCKERD = "/usr/sbin/dockerd"
IMAGE = "healer-smoke:test"
MODEL_ID = "healer-test/tiny-gemma3"
TORCH_WHEEL = Path("/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl")
TOKEN = f"hf_smoke{uuid.uuid4().hex}"


def _skip_loudly(reason: str):
    banner = "#" * 78
    print(f"\n{banner}\n# CONTAINER SMOKE TEST SKIPPED: {reason}\n{banner}", file=sys.stderr)
    pytest.skip(f"CONTAINER SMOKE TEST NOT RUN: {reason}")


def _ensure_tools() -> None:
    if os.geteuid() != 0:
        _skip_loudly("dockerd and debootstrap need root")
    missing = [tool for tool in (DOCKER, DOCKERD, "/usr/sbin/debootstrap") if not Path(tool).exists()]
    if not missing:
        return
    if not shutil.which("apt-get"):
        _skip_loudly(f"{', '.join(missing)} missing and no apt-get to install docker.io/debootstrap")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "docker.io", "debootstrap"], check=True, env=env)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def docker_env():
    """A dockerd of our own; yields the environment that points /usr/bin/docker at it."""
    _ensure_tools()
    home = BUILD / "docker"
    home.mkdir(parents=True, exist_ok=True)
    (BUILD / "logs").mkdir(exist_ok=True)
    socket_path = home / "docker.sock"
    env = {**os.environ, "DOCKER_HOST": f"unix://{socket_path}", "DOCKER_BUILDKIT": "1"}
    pidfile = home / "dockerd.pid"
    daemon, exec_root = None, None
    if not _docker_ready(env):
        socket_path.unlink(missing_ok=True)
        exec_root = tempfile.mkdtemp(prefix="healer-dockerd-")  # short: it holds sockets
        log = open(BUILD / "logs" / "dockerd.log", "ab")
        daemon = subprocess.Popen(
            [DOCKERD, "--data-root", str(home / "data"), "--exec-root", exec_root,
             "--pidfile", str(pidfile), "--host", f"unix://{socket_path}",
             "--storage-driver", "overlay2", "--bridge", "none", "--iptables=false"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not _docker_ready(env):
            if daemon.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dockerd did not start; see {BUILD / 'logs' / 'dockerd.log'}")
            time.sleep(0.2)
    yield env
    # Each run's fake Hub and wheel index listen on fresh ports (build args), so the torch and
    # weights layers are rebuilt every run: keep the cache from growing without bound.
    _docker(env, "image", "prune", "-f")
    _docker(env, "builder", "prune", "-f", "--keep-storage", "3gb")
    if daemon is not None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        # dockerd leaves its network namespace mounted in the exec root.
        subprocess.run(["umount", f"{exec_root}/netns/default"], capture_output=True)
        shutil.rmtree(exec_root, ignore_errors=True)


def _docker_ready(env) -> bool:
    return subprocess.run([DOCKER, "info"], env=env, capture_output=True).returncode == 0


def _docker(env, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True, **kwargs)


@contextlib.contextmanager
def _serve_directory(directory: Path):
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def image(docker_env, tmp_path_factory):
    """Builds the Dockerfile with the demo model as a gated repo on a local fake Hub."""
    base = subprocess.run(
        [str(ROOT / "tests/container/base_images.sh"), str(BUILD / "cache")],
        env={**docker_env, "DOCKER": DOCKER}, capture_output=True, text=True,
    )
    assert base.returncode == 0, f"base images failed:\n{base.stdout}\n{base.stderr}"
    work = tmp_path_factory.mktemp("smoke")
    demo = work / "demo-model"
    subprocess.run([sys.executable, "download.py", "--demo"], cwd=ROOT, check=True,
                   env={**os.environ, "MODEL_DIR": str(demo)}, capture_output=True)
    index = work / "wheels" / "simple" / "torch"
    index.mkdir(parents=True)
    shutil.copy(TORCH_WHEEL, index)
    (index / "index.html").write_text(f'<a href="{TORCH_WHEEL.name.replace("+", "%2B")}">'
                                      f"{TORCH_WHEEL.name}</a>\n")
    log_path = BUILD / "logs" / "build.log"
    with FakeHub(demo, MODEL_ID, token=TOKEN) as hub, _serve_directory(work / "wheels") as wheels:
        started = time.monotonic()
        with open(log_path, "w") as log:
            build = subprocess.run(
                [DOCKER, "build", "--progress=plain", "--network=host",
                 "--secret", "id=hf_token,env=HF_TOKEN_FOR_BUILD",
                 "--build-arg", f"MODEL_ID={MODEL_ID}",
                 "--build-arg", f"HF_ENDPOINT={hub.url}",
                 "--build-arg", f"TORCH_INDEX_URL={wheels}/simple",
                 "-t", IMAGE, "."],
                cwd=ROOT, env={**docker_env, "HF_TOKEN_FOR_BUILD": TOKEN},
                stdout=log, stderr=subprocess.STDOUT, timeout=1200,
            )
        seconds = time.monotonic() - started
        downloads = hub.file_downloads()
    if build.returncode != 0:
        pytest.fail(f"docker build failed ({seconds:.0f} s):\n{log_path.read_text()[-6000:]}")
    size = int(_docker(docker_env, "image", "inspect", "-f", "{{.Size}}", IMAGE).stdout)
    print(f"\nbuilt {IMAGE} in {seconds:.0f} s, {size / 1e9:.2f} GB; log {log_path}", file=sys.stderr)
    return {"env": docker_env, "downloads": downloads, "size": size}


@pytest.fixture(scope="module")
def container(image):
    env = image["env"]
    port = _free_port()
    run = _docker(env, "run", "-d", "--network=host", "-e", f"PORT={port}", IMAGE)
    assert run.returncode == 0, run.stderr
    cid = run.stdout.strip()
    url = f"http://127.0.0.1:{port}"
    health, deadline = None, time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/", timeout=5) as response:
                health = json.load(response)
                break
        except OSError:
            if _docker(env, "inspect", "-f", "{{.State.Running}}", cid).stdout.strip() != "true":
                break
            time.sleep(1)
    if health is None:
        logs = _docker(env, "logs", cid)
        _docker(env, "rm", "-f", cid)
        pytest.fail(f"the container never answered GET /:\n{logs.stdout[-4000:]}{logs.stderr[-4000:]}")
    yield {"env": env, "id": cid, "url": url, "health": health}
    _docker(env, "rm", "-f", cid)


def test_the_build_fetched_the_weights_from_the_hub_with_the_secret_token(image):
    assert any(path.endswith("/model.safetensors") for path in image["downloads"])
    assert not any(path.endswith("healer-model.json") for path in image["downloads"])


def test_health_reports_the_downloaded_model_and_its_commit(container):
    model = container["health"]["model"]
    assert container["health"]["status"] == "ok"
    assert model["id"] == MODEL_ID
    assert model["revision"] == COMMIT
    assert model["device"] == "cpu"


def test_predict_answers_a_real_h_and_e_image(container):
    spec = importlib.util.find_spec("tiatoolbox")
    image = Path(spec.submodule_search_locations[0]) / "data" / "target_image.png"
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image_file"; filename="tissue.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode() + image.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        container["url"] + "/predict", data=body, method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.status == 200
        prediction = json.load(response)
    assert prediction["answer"] in ("yes", "no", "uncertain")
    assert 0.0 <= prediction["probability"] <= 1.0
    assert prediction["model"]["revision"] == COMMIT
    assert "not a diagnosis" in prediction["disclaimer"]


def test_the_server_does_not_run_as_root(container):
    uid = _docker(container["env"], "exec", container["id"], "id", "-u")
    assert uid.returncode == 0, uid.stderr
    assert uid.stdout.strip() not in ("", "0")
    status = _docker(container["env"], "exec", container["id"], "cat", "/proc/1/status").stdout
    real_uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    assert real_uid != "0"
    cmdline = _docker(container["env"], "exec", container["id"], "cat", "/proc/1/cmdline").stdout
    assert cmdline.split("\0")[:2] == ["python", "main.py"]  # exec form: PID 1 is the server


def test_the_token_is_in_no_layer_history_or_config(image):
    env = image["env"]
    history = _docker(env, "history", "--no-trunc", IMAGE)
    assert history.returncode == 0 and "download.py" in history.stdout
    assert TOKEN not in history.stdout
    config = _docker(env, "image", "inspect", IMAGE)
    assert TOKEN not in config.stdout
    # The scan must be able to find what is there: the commit download.py recorded is a canary.
    found = _scan_saved_image(env, [TOKEN.encode(), COMMIT.encode()])
    assert found[COMMIT.encode()], "the docker save scan is blind: it did not find the canary"
    assert not found[TOKEN.encode()], "the Hugging Face token is inside an image layer"


def _scan_saved_image(env, needles: list[bytes]) -> dict[bytes, bool]:
    """Streams `docker save` (uncompressed layer tars) looking for each needle."""
    found = dict.fromkeys(needles, False)
    overlap = max(len(n) for n in needles)
    save = subprocess.Popen([DOCKER, "save", IMAGE], env=env, stdout=subprocess.PIPE)
    tail = b""
    while chunk := save.stdout.read(1 << 22):
        window = tail + chunk
        for needle in needles:
            found[needle] = found[needle] or needle in window
        tail = window[-overlap:]
    assert save.wait() == 0, "docker save failed"
    return found


def test_the_cpu_image_carries_no_cuda(image):
    check = _docker(image["env"], "run", "--rm", "--network=none", IMAGE, "python", "-c",
                    "import torch, importlib.metadata as m; print(torch.__version__); "
                    "print(sorted(d.metadata['Name'] for d in m.distributions()))")
    assert check.returncode == 0, check.stderr
    version, packages = check.stdout.splitlines()[-2:]
    assert version.endswith("+cpu")
    assert "nvidia" not in packages.lower()


def test_runtime_is_offline_and_the_page_is_served_only_when_built(container):
    env = _docker(container["env"], "exec", container["id"], "printenv", "HF_HUB_OFFLINE")
    assert env.stdout.strip() == "1"
    frontend_sources = (ROOT / "frontend" / "package.json").is_file()
    try:
        with urllib.request.urlopen(container["url"] + "/app/", timeout=10) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    assert status == (200 if frontend_sources else 404)

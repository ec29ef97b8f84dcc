"""Builds the real Dockerfile, runs the image, and checks what a Cloud Run deploy would rely on.

The set-up, all local because Docker Hub, Hugging Face and PyTorch's index are unreachable here:

- Docker: Debian's `docker.io` (installed with apt when missing) and a `dockerd` this module
  starts itself, with its data root in `.build/docker/` (kept between runs as the build cache)
  and no bridge or iptables changes (`--network=host` everywhere). It is stopped at the end,
  by its PID. `/usr/bin/docker` with BuildKit: the `docker` first on PATH has no buildx.
- Base images: the Dockerfile pins its bases by digest, which cannot be pulled here; the build
  args PYTHON_IMAGE and NODE_IMAGE name local stand-ins instead: `python:3.11-slim` made with
  debootstrap and `node:20-slim` from this host's Node.js (tests/container/base_images.sh),
  each made once and cached.
- Weights: the tiny demo model, served by tests/fake_hub.py on the host as a *gated* repo.
  The Dockerfile is built unchanged: `HF_ENDPOINT` and `MODEL_ID` are build args, the token is
  a BuildKit secret read from an environment variable (as cloudbuild.yaml passes it), and
  `download.py` fetches the weights in the build as it would MedGemma.
- torch: the CPU wheel of torch 2.13.0 for CPython 3.11, found in /opt/wheels or .build/wheels,
  or fetched there with `pip download` from this machine's configured index; served as a PEP 503
  index on loopback (`TORCH_INDEX_URL`). Without it the module skips, saying why.
- The build context is a copy of the working tree (git's tracked and untracked, not ignored,
  files), so a second build can edit `healer/settings.py` and show the weights layer reused.

Then the image runs; the test waits for `GET /`, posts a real H&E image, and checks that the
token is in no layer (`docker save`), not in `docker history`, not in the image config, that
the server is not root, and that the CPU image carries no CUDA.

It skips only when it truly cannot run (not root, no apt to install Docker, no torch wheel), and
says why.
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
TORCH_REQUIREMENT = "torch==2.13.0+cpu"
TORCH_WHEEL_PATTERN = "torch-2.13.0+cpu-cp311-cp311-*linux*_x86_64.whl"
LOCAL_BASES = {"PYTHON_IMAGE": "python:3.11-slim", "NODE_IMAGE": "node:20-slim"}  # base_images.sh
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


def _torch_wheel() -> Path:
    """The CPU torch wheel the image's Python (3.11, x86-64) needs: found, fetched, or a loud skip."""
    downloads = BUILD / "wheels"
    for folder in (Path("/opt/wheels"), downloads):
        found = sorted(folder.glob(TORCH_WHEEL_PATTERN))
        if found:
            return found[-1]
    downloads.mkdir(parents=True, exist_ok=True)
    fetch = subprocess.run(
        [sys.executable, "-m", "pip", "download", TORCH_REQUIREMENT, "--no-deps", "--only-binary=:all:",
         "--python-version", "3.11", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
         "--dest", str(downloads)],
        capture_output=True, text=True, timeout=1800,
    )
    found = sorted(downloads.glob(TORCH_WHEEL_PATTERN))
    if not found:
        why = (fetch.stderr.strip().splitlines() or ["no output"])[-1]
        _skip_loudly(f"no {TORCH_REQUIREMENT} wheel for CPython 3.11: none in /opt/wheels or {downloads}, "
                     f"and `pip download {TORCH_REQUIREMENT}` from the configured index failed: {why}")
    return found[-1]


def _copy_context(destination: Path) -> Path:
    """The working tree as git sees it (tracked and untracked, not ignored): the build context."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, check=True)
    for name in filter(None, listing.stdout.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


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
def build_inputs(docker_env, tmp_path_factory):
    """Base images, the torch wheel index and the fake Hub (the demo model, gated), kept up for
    every build of this module: the same build args each time, so the cache can be reused."""
    wheel = _torch_wheel()
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
    shutil.copy(wheel, index)
    (index / "index.html").write_text(f'<a href="{wheel.name.replace("+", "%2B")}">{wheel.name}</a>\n')
    with FakeHub(demo, MODEL_ID, token=TOKEN) as hub, _serve_directory(work / "wheels") as wheels:
        build_args = {**LOCAL_BASES, "MODEL_ID": MODEL_ID, "HF_ENDPOINT": hub.url,
                      "TORCH_INDEX_URL": f"{wheels}/simple"}
        yield {"env": docker_env, "hub": hub, "build_args": build_args, "work": work}


def _build(inputs, context: Path, tag: str, log_name: str) -> tuple[subprocess.CompletedProcess, float, str]:
    log_path = BUILD / "logs" / log_name
    args = [arg for name, value in inputs["build_args"].items() for arg in ("--build-arg", f"{name}={value}")]
    started = time.monotonic()
    with open(log_path, "w") as log:
        build = subprocess.run(
            [DOCKER, "build", "--progress=plain", "--network=host",
             "--secret", "id=hf_token,env=HF_TOKEN_FOR_BUILD", *args, "-t", tag, "."],
            cwd=context, env={**inputs["env"], "HF_TOKEN_FOR_BUILD": TOKEN},
            stdout=log, stderr=subprocess.STDOUT, timeout=1200,
        )
    seconds = time.monotonic() - started
    output = log_path.read_text()
    if build.returncode != 0:
        pytest.fail(f"docker build failed ({seconds:.0f} s):\n{output[-6000:]}")
    return build, seconds, output


@pytest.fixture(scope="module")
def image(build_inputs):
    """Builds the Dockerfile with the demo model as a gated repo on a local fake Hub."""
    hub = build_inputs["hub"]
    context = _copy_context(build_inputs["work"] / "context")
    hub.requests.clear()
    _, seconds, _ = _build(build_inputs, context, IMAGE, "build.log")
    downloads = hub.file_downloads()
    env = build_inputs["env"]
    size = int(_docker(env, "image", "inspect", "-f", "{{.Size}}", IMAGE).stdout)
    print(f"\nbuilt {IMAGE} in {seconds:.0f} s, {size / 1e9:.2f} GB", file=sys.stderr)
    return {"env": env, "downloads": downloads, "size": size, "context": context}


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


def _layers(env, tag: str) -> list[str]:
    return json.loads(_docker(env, "image", "inspect", "-f", "{{json .RootFS.Layers}}", tag).stdout)


def test_editing_a_setting_reuses_the_cached_weights_layer(image, build_inputs, tmp_path):
    """A change to healer/settings.py rebuilds the code layer only: no second 8.6 GB download."""
    context = tmp_path / "context"
    shutil.copytree(image["context"], context)
    settings = context / "healer" / "settings.py"
    settings.write_text(settings.read_text() + "\n# an edited setting\n")
    hub = build_inputs["hub"]
    hub.requests.clear()
    edited = "healer-smoke:edited-settings"
    _, seconds, log = _build(build_inputs, context, edited, "build-edited-settings.log")
    print(f"\nrebuilt after editing settings.py in {seconds:.0f} s", file=sys.stderr)
    assert hub.requests == []  # the Hub was not asked for anything, let alone the weights
    step = next(line.split()[0] for line in log.splitlines()
                if "[weights" in line and "python download.py" in line)
    assert f"{step} CACHED" in log, f"the download step {step} ran again"
    before, after = _layers(build_inputs["env"], IMAGE), _layers(build_inputs["env"], edited)
    assert len(before) == len(after)
    assert after[:-1] == before[:-1]  # OS, dependencies, the weights, the page, main.py: the same
    assert after[-1] != before[-1]  # healer/ itself
    _docker(build_inputs["env"], "rmi", edited)


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

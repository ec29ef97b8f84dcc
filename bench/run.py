"""Side-by-side benchmark over HTTP: the original project's settings, Healer bf16 and int8, llama.cpp, vLLM.

    python -m bench.run --size medgemma-4b       # full size: builds a 4.3 B random model once (~8.6 GB)
    python -m bench.run --size medgemma-4b --isa avx2   # every server computing as an AVX2-only CPU
    python -m bench.run --size tiny --requests 2 # seconds; CI runs this to keep the script working

`--isa CLASS` forces a CPU class (healer.model.cpu_class) on this machine for the benchmark and every
server it starts, with the libraries' own caps; the result file names the class, the caps and the
kernels each Healer server chose. llama.cpp computes with the ISA it was built for: a forced run
leaves it out.

One run, one machine, one model directory (random weights with the chosen architecture cost
exactly what real weights cost). The llama.cpp row needs `python -m bench.llama_cpp prepare` first,
the vLLM row its CPU build (`scripts/vllm-venv.sh`); without them each is left out with the reason
printed. Every server is a separate process started cold; memory is sampled from /proc (anonymous
and file-backed separately, summed over the server's processes: vLLM computes in a child). Prints a Markdown table and writes it,
with the date and a description of the machine, to bench/results/.
"""

import argparse
import io
import json
import os
import platform
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import httpx
import torch
from PIL import Image
from transformers import AutoProcessor

from bench import llama_cpp, vllm_peer
from bench.openai_chat import EXPLAINED_TOKENS
from healer.model.cpu_class import CAP_VARIABLES, CLASSES, detect, forcing_environment
from healer.model.demo import write_demo_model
from healer.model.medgemma import usable_cpus
from healer.model.model_dir import missing_files
from healer.text.prompts import DEFAULT_QUESTION, SYSTEM_PROMPT
from healer.tools.live_server import live_server
from healer.tools.packaged_data import package_file

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {
    # name: (command, environment)
    "original": ([sys.executable, "-m", "bench.original_service"], {}),
    "healer-bf16": ([sys.executable, "main.py"], {"QUANTIZATION": "none", "CACHE_SIZE": "0"}),
    "healer-int8": ([sys.executable, "main.py"], {"QUANTIZATION": "int8", "CACHE_SIZE": "0"}),
    "llama-cpp": (None, {}),  # llama-server, started by bench.llama_cpp
    "vllm": (None, {}),  # vLLM's CPU build, started by bench.vllm_peer
}
PEERS = ("llama-cpp", "vllm")  # the other engines: OpenAI chat API, no Healer service in front


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants, from /proc's children lists."""
    tree, i = [pid], 0
    while i < len(tree):
        for task in Path(f"/proc/{tree[i]}/task").glob("*"):
            try:
                tree += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                pass
        i += 1
    return tree


@dataclass
class Memory:
    """Peak resident memory of a server's processes, sampled every 100 ms: anonymous and file-backed."""

    pid: int
    peak_anon: float = 0.0
    peak_file: float = 0.0
    peak_total: float = 0.0
    last: dict = field(default_factory=dict)

    def sample(self) -> None:
        gib = {"RssAnon": 0.0, "RssFile": 0.0, "VmRSS": 0.0, "VmHWM": 0.0}
        for pid in process_tree(self.pid):
            try:
                status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
                for key in gib:
                    gib[key] += int(status[key].split()[0]) / 2**20
            except (OSError, ValueError, KeyError):
                continue
        if not gib["VmRSS"]:
            return
        self.last = gib
        self.peak_anon = max(self.peak_anon, gib["RssAnon"])
        self.peak_file = max(self.peak_file, gib["RssFile"])
        self.peak_total = max(self.peak_total, gib["VmHWM"])  # each process's own peak: an upper bound


def sampling(memory: Memory, stop: threading.Event) -> threading.Thread:
    def loop():
        while not stop.is_set():
            memory.sample()
            stop.wait(0.1)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def tiles(count: int) -> list[bytes]:
    """Distinct 512 px H&E tiles (no two alike, so no cache can help)."""
    source = Image.open(package_file("tiatoolbox", "data", "target_image.png")).convert("RGB")
    out = []
    for i in range(count):
        x, y = (i * 61) % 488, (i * 97) % 488
        buffer = io.BytesIO()
        source.crop((x, y, x + 512, y + 512)).rotate(90 * (i % 4)).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def post(url: str, image: bytes, explain: bool = True) -> float:
    started = time.perf_counter()
    response = httpx.post(url + "/predict", files={"image_file": ("tile.png", image)},
                          data={"explain": str(explain).lower()}, timeout=3600)
    response.raise_for_status()
    return time.perf_counter() - started


def batch_counts(url: str) -> tuple[float, float] | None:
    """(queries, model calls) so far, from Healer's Prometheus metrics; None without them."""
    response = httpx.get(url + "/metrics", timeout=60)
    values = dict(line.rsplit(" ", 1) for line in response.text.splitlines()
                  if line.startswith(("healer_batch_size_sum ", "healer_batch_size_count ")))
    if response.status_code != 200 or len(values) != 2:  # no metrics, or another engine's
        return None
    return float(values["healer_batch_size_sum"]), float(values["healer_batch_size_count"])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def matmul_ceiling_tflops(dtype: torch.dtype, size: int = 2048, seconds: float = 3.0) -> float:
    """Sustained matrix-multiply speed on this machine's usable CPUs (the roofline for prefill)."""
    torch.set_num_threads(usable_cpus())
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.matmul(a, b)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        torch.matmul(a, b)
        runs += 1
    return 2 * size**3 * runs / (time.perf_counter() - started) / 1e12


def served_prompt_tokens(model_dir: Path) -> int:
    """Tokens of the served prompt (system turn, image, default question) with the model's own
    tokenizer: ~360 with MedGemma's, ~710 with the random models' small demo vocabulary."""
    processor = AutoProcessor.from_pretrained(model_dir)
    messages = [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": DEFAULT_QUESTION}]},
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[[Image.new("RGB", (64, 64))]], add_special_tokens=False)
    return len(inputs["input_ids"][0])


def prefill_tflop(model_dir: Path, prompt_tokens: int) -> float:
    """Matrix-multiply work of one prefill: vision tower over 4096 patches, then the decoder."""
    config = json.loads((model_dir / "config.json").read_text())
    v, t = config["vision_config"], config["text_config"]
    patches = (v["image_size"] // v["patch_size"]) ** 2
    vision_linear = v["num_hidden_layers"] * (4 * v["hidden_size"] ** 2 + 2 * v["hidden_size"] * v["intermediate_size"])
    vision_attention = v["num_hidden_layers"] * 2 * patches * patches * v["hidden_size"]
    q = t["num_attention_heads"] * t["head_dim"]
    kv = t["num_key_value_heads"] * t["head_dim"]
    text_linear = t["num_hidden_layers"] * (
        t["hidden_size"] * (q + 2 * kv) + q * t["hidden_size"] + 3 * t["hidden_size"] * t["intermediate_size"]
    )
    text_attention = t["num_hidden_layers"] * 2 * prompt_tokens * prompt_tokens * q
    lm_head = t["hidden_size"] * t["vocab_size"]  # the last position only
    flop = 2 * (patches * vision_linear + vision_attention + prompt_tokens * text_linear + text_attention + lm_head)
    return flop / 1e12


@contextmanager
def healer_server(name: str, model_dir: Path, clients: int):
    command, env = CONFIGS[name]
    env = {**env, "MODEL_DIR": str(model_dir), "LOG_LEVEL": "warning", "MAX_QUEUE": "64",
           "MAX_BATCH_SIZE": str(clients), "BATCH_WAIT_MS": "50", "REQUEST_TIMEOUT_S": "3600"}
    with live_server(env, command=command, timeout_s=1800) as (url, process):
        yield url, process


@contextmanager
def peer_server(peer):
    url, process = peer.start()
    try:
        yield url, process
    finally:
        peer.stop(process)


def start_peer(name: str, model_dir: Path, clients: int):
    if name == "llama-cpp":
        return llama_cpp.Server(usable_cpus(), clients)
    return vllm_peer.Server(model_dir, clients)


def bench_config(name: str, model_dir: Path, images: list[bytes], requests: int, clients: int) -> dict:
    if name in PEERS:
        peer = start_peer(name, model_dir, clients)
        server, ask, health_path = peer_server(peer), peer.ask, peer.health_path
    else:
        server, ask, health_path = healer_server(name, model_dir, clients), post, "/"
    images = iter(images)
    started = time.perf_counter()
    stop = threading.Event()
    with server as (url, process):
        memory = Memory(process.pid)
        sampler = sampling(memory, stop)
        result = {"cold_start_s": time.perf_counter() - started}
        if name not in PEERS:
            result["compute"] = httpx.get(url + health_path, timeout=60).json().get("model", {}).get("compute")
        result["first_s"], result["second_s"] = ask(url, next(images)), ask(url, next(images))
        sequential_started = time.perf_counter()
        explained = [ask(url, next(images)) for _ in range(requests)]
        result["throughput_1"] = requests / (time.perf_counter() - sequential_started)
        result["explained"] = explained
        if name != "original":
            result["answer_only"] = [ask(url, next(images), explain=False) for _ in range(requests)]
        health, done = [], threading.Event()

        def probe():
            # One client for every probe: httpx.get builds a client per call, and its TLS context
            # alone took ~26 ms of this process's CPU, which the 0433-1244 runs' p99 included.
            with httpx.Client(timeout=3600) as client:
                while not done.is_set():
                    t0 = time.perf_counter()
                    client.get(url + health_path)
                    health.append(time.perf_counter() - t0)
                    done.wait(0.1)

        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        burst = [next(images) for _ in range(clients)]
        batches_before = batch_counts(url)
        concurrent_started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(lambda image: ask(url, image), burst))
        result[f"throughput_{clients}"] = clients / (time.perf_counter() - concurrent_started)
        batches_after = batch_counts(url)
        if batches_before and batches_after:  # the original has no metrics
            result["burst_batches"] = batches_after[1] - batches_before[1]
        done.set()
        prober.join()
        result["health_p99_ms"] = percentile(health, 0.99) * 1000
        memory.sample()
        result["steady_anon_gib"], result["steady_file_gib"] = memory.last["RssAnon"], memory.last["RssFile"]
        stop.set()
        sampler.join()
        result.update(peak_anon_gib=memory.peak_anon, peak_file_gib=memory.peak_file,
                      peak_total_gib=memory.peak_total)
    if name in PEERS:
        result["server_timings"] = peer.summary()
    return result


def machine() -> str:
    cpu = detect()
    mem = int(next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal"))) / 2**20
    return (f"{cpu.model}, {usable_cpus()} usable CPUs, {mem:.0f} GiB RAM, Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def cpu_class_line() -> str:
    cpu = detect()
    if cpu.name == cpu.hardware:
        return f"CPU class: **{cpu.name}** (the hardware's own)."
    caps = " ".join(f"{k}={os.environ[k]}" for k in CAP_VARIABLES if k in os.environ)
    return f"CPU class: **{cpu.name}**, forced on {cpu.hardware} hardware with {caps}."


def kernels(results: dict) -> list[str]:
    lines = []
    for name, r in results.items():
        if r.get("compute"):
            chosen = "; ".join(f"{phase}: {kernel}" for phase, kernel in r["compute"]["kernels"].items())
            lines.append(f"- {name} ({r['compute']['cpu_class']}): {chosen}")
    return lines


def table(results: dict, clients: int) -> str:
    rows = [
        ("cold start to ready (s)", lambda r: f"{r['cold_start_s']:.1f}"),
        ("first / second request (s)", lambda r: f"{r['first_s']:.1f} / {r['second_s']:.1f}"),
        ("explained answer p50 / p95 (s)",
         lambda r: f"{statistics.median(r['explained']):.2f} / {percentile(r['explained'], 0.95):.2f}"),
        ("answer-only p50 / p95 (s)", lambda r: (
            f"{statistics.median(r['answer_only']):.2f} / {percentile(r['answer_only'], 0.95):.2f}"
            if "answer_only" in r else "n/a")),
        (f"decode per token, (explained − answer-only) / {EXPLAINED_TOKENS - 1} (s)",
         lambda r: f"{decode_s(r):.3f}" if "answer_only" in r else "n/a"),
        ("throughput, 1 client (answers/min)", lambda r: f"{60 * r['throughput_1']:.2f}"),
        (f"throughput, {clients} clients (answers/min)", lambda r: f"{60 * r[f'throughput_{clients}']:.2f}"),
        (f"model calls for the {clients} concurrent answers", lambda r: f"{r['burst_batches']:.0f}" if "burst_batches" in r else "n/a"),
        ("GET / p99 under load (ms)", lambda r: f"{r['health_p99_ms']:.0f}"),
        ("peak RSS: anon / file (GiB)", lambda r: f"{r['peak_anon_gib']:.2f} / {r['peak_file_gib']:.2f}"),
        ("steady RSS: anon / file (GiB)", lambda r: f"{r['steady_anon_gib']:.2f} / {r['steady_file_gib']:.2f}"),
    ]
    names = list(results)
    lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(cell(results[n]) for n in names) + " |" for label, cell in rows]
    return "\n".join(lines)


def decode_s(r: dict) -> float:
    """Seconds per generated token: what the 47 tokens after the first add to an answer."""
    return (statistics.median(r["explained"]) - statistics.median(r["answer_only"])) / (EXPLAINED_TOKENS - 1)


def throughput_bound(r: dict, clients: int) -> float:
    """Answers per second `clients` concurrent answers can reach at best on a CPU: their prefills
    are compute-bound (one after another), their decode steps shared (one weight read per step)."""
    return clients / (clients * statistics.median(r["answer_only"]) + (EXPLAINED_TOKENS - 1) * decode_s(r))


def ratios(results: dict, clients: int, ceiling: float, work: float) -> list[str]:
    lines = []
    llama = results.get("llama-cpp", {}).get("server_timings")
    if llama:
        lines.append(f"- llama-cpp as it reports itself: prompt of {llama.get('prompt_tokens')} tokens in "
                     f"{llama.get('prompt_s', float('nan')):.2f} s (image encoding included), "
                     f"decode {llama.get('decode_s_per_token', float('nan')):.3f} s/token")
    if "vllm" in results:
        lines.append(f"- vllm's prompt, as it counts it: {results['vllm']['server_timings'].get('prompt_tokens')} "
                     "tokens (the image's 256 included)")
    original = results.get("original")
    for name in (n for n in results if n != "original"):
        r = results[name]
        explained, answer_only = statistics.median(r["explained"]), statistics.median(r["answer_only"])
        if original:
            lines.append(f"- {name}: explained answer {explained / statistics.median(original['explained']):.3f}× "
                         f"the original settings' time, answer-only "
                         f"{answer_only / statistics.median(original['explained']):.3f}× (targets: below 1; "
                         "explained ≤ 0.5× on avx2)")
        if name == "healer-int8" and "healer-bf16" in results:
            bf16 = results["healer-bf16"]
            lines.append(f"- {name} against healer-bf16: explained {explained / statistics.median(bf16['explained']):.2f}×, "
                         f"answer-only {answer_only / statistics.median(bf16['answer_only']):.2f}× (target: below 1)")
        lines.append(f"- {name}: answer-only {answer_only:.2f} s is {answer_only / (work / ceiling):.2f}× the "
                     f"prefill time at the fastest float matmul's ceiling, {work / ceiling:.2f} s (target ≤ 1.3×)")
        lines.append(f"- {name}: {clients} clients give {r[f'throughput_{clients}'] / r['throughput_1']:.2f}× "
                     f"the sequential throughput, {r[f'throughput_{clients}'] / throughput_bound(r, clients):.0%} "
                     f"of the bound from its solo prefill and decode (target ≥ 95 %); GET / p99 "
                     f"{r['health_p99_ms']:.0f} ms (target ≤ 50 ms)")
        for peer in (p for p in PEERS if p in results and name == "healer-int8"):
            other = results[peer]
            lines.append(f"- {name}: decode {decode_s(r):.3f} s/token vs {peer}'s {decode_s(other):.3f} "
                         f"(target: no slower); answer-only {answer_only:.2f} s is "
                         f"{answer_only / statistics.median(other['answer_only']):.2f}× {peer}'s, explained "
                         f"{explained / statistics.median(other['explained']):.2f}×")
    return lines


def forced_away() -> str | None:
    cpu = detect()
    return f"it computes with its build's ISA, not the forced class {cpu.name}" if cpu.name != cpu.hardware else None


def peer_missing(name: str, size: str) -> str | None:
    """Why a peer engine's row cannot run here, or None."""
    if forced := forced_away():
        return forced
    if name == "vllm":
        return vllm_peer.missing()
    if size != "medgemma-4b":
        return "its GGUF files are converted from the full-size checkpoint only"
    return llama_cpp.missing()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "medgemma-4b"], default="tiny")
    parser.add_argument("--requests", type=int, default=3, help="sequential requests per latency series")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--models", type=Path, default=ROOT / "bench" / "models")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--isa", choices=CLASSES[1:], help="force this CPU class on every server (and the ceiling)")
    args = parser.parse_args(argv)
    if args.isa and detect().name != args.isa:
        forcing = forcing_environment(args.isa)
        if CLASSES.index(args.isa) > CLASSES.index(detect().hardware):
            parser.error(f"this machine's CPU is {detect().hardware}: {args.isa} cannot be forced here")
        # The caps must be in place before torch loads its kernels: in this process too, for the ceiling.
        os.execve(sys.executable, [sys.executable, "-m", "bench.run", *(argv or sys.argv[1:])], {**os.environ, **forcing})

    model_dir = args.models / args.size
    if missing_files(model_dir):
        print(f"building the random {args.size} model in {model_dir} (once)…", flush=True)
        write_demo_model(model_dir, args.size)
    load_at_start = os.getloadavg()[0]  # other work on the machine shares its CPUs: say how much
    ceiling = {dtype: matmul_ceiling_tflops(dtype) for dtype in (torch.bfloat16, torch.float32)}
    prompt_tokens = served_prompt_tokens(model_dir)
    work = prefill_tflop(model_dir, prompt_tokens)
    images = tiles(2 + 2 * args.requests + args.clients)

    results, failed = {}, {}
    for name in args.configs.split(","):
        if name in PEERS and (reason := peer_missing(name, args.size)):
            print(f"skipping {name}: {reason}", flush=True)
            continue
        print(f"benchmarking {name}…", flush=True)
        try:
            results[name] = bench_config(name, model_dir, images, args.requests, args.clients)
        except Exception as error:  # one server that fails to start or answer: the others still count
            print(f"{name} failed: {error}", flush=True)
            failed[name] = str(error)

    load = os.getloadavg()[0]
    stamp = datetime.now(timezone.utc)
    report = "\n".join([
        f"# Benchmark: {args.size}, {stamp:%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {machine()}.",
        cpu_class_line(),
        f"bf16 matmul ceiling {ceiling[torch.bfloat16]:.2f} TFLOP/s, fp32 {ceiling[torch.float32]:.2f} TFLOP/s; "
        f"one prefill (the served {prompt_tokens}-token prompt, one 896 px image) is {work:.2f} TFLOP.",
        f"{args.requests} requests per latency series, {args.clients} concurrent clients; "
        "every server started cold, cache off, distinct images.",
        f"Load average (1 min): {load_at_start:.2f} at the start, {load:.2f} at the end.",
        "",
        table(results, args.clients),
        *[f"{name} failed, left out: {reason}" for name, reason in failed.items()],
        *([f"{peer} serves no page: its GET / row probes GET /health." for peer in PEERS if peer in results]),
        "",
        "Kernels each Healer server chose (its GET /):",
        *kernels(results),
        "",
        # The faster float product this class has: bf16 only where the CPU has bf16 hardware.
        *ratios(results, args.clients, max(ceiling.values()), work),
        "",
    ])
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{args.size}-{detect().name}-{stamp:%Y%m%d-%H%M}"
    path = args.out / f"{stem}.md"
    path.write_text(report)
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1))
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

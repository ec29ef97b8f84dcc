"""Where a decode step's time goes, at full size: one explained answer profiled step by step.

    MODEL_DIR=/work/cache/models/medgemma-4b QUANTIZATION=int8 DEVICE=cpu \
        python -m bench.decode_profile --steps 20

Loads the engine as the service does, answers one real 896 px H&E tile with an explanation, and
profiles the decode steps only (not the prefill): each step's wall time is split into the
language model's parts (each linear kind, attention, norms, rotary, the rest) and what lies
between the model's forward calls (generate's logits processors, stopping criteria, cache
bookkeeping). Time inside a part is its operators plus the Python that runs them; profiling
inflates small operators, so the table's shares matter more than its absolutes. Prints a table.
"""

import argparse
import collections
import os
import time

import torch
from PIL import Image
from torch.profiler import ProfilerActivity, profile, record_function

from healer.model.engine import Query
from healer.model.medgemma import MedGemmaEngine
from healer.text.prompts import DEFAULT_QUESTION
from healer.settings import Settings
from healer.tools.packaged_data import package_file

_LINEARS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "qkv_proj", "gate_up_proj"}


def tile() -> Image.Image:
    image = Image.open(package_file("tiatoolbox", "data", "target_image.png")).convert("RGB")
    return image.resize((896, 896))


def _part(name: str, module) -> str | None:
    kind = type(module).__name__
    last = name.rsplit(".", 1)[-1]
    if last in _LINEARS:
        return last
    if name.endswith("lm_head"):
        return "lm_head (262k vocabulary)"
    if "RMSNorm" in kind:
        return "norms"
    if "Rotary" in kind:
        return "rotary tables"
    if kind.endswith("Attention"):
        return "attention (rope, cache, sdpa, views)"
    if kind.endswith("MLP"):
        return "mlp (gelu, multiply)"
    if kind.endswith("DecoderLayer"):
        return "layer (residual adds)"
    if "Embedding" in kind:
        return "embedding"
    if kind.endswith("TextModel"):
        return "text model (masks, loop)"
    return None


def label_modules(model) -> None:
    """A record_function range around each part of the language model, named by its part."""
    language = model.model.language_model
    for name, module in [("lm_head", model.lm_head), *language.named_modules()]:
        part = _part(name, module)
        if part is None:
            continue

        def enter(mod, args, part=part):
            mod._range = record_function(part)
            mod._range.__enter__()

        def leave(mod, args, output):
            mod._range.__exit__(None, None, None)

        module.register_forward_pre_hook(enter)
        module.register_forward_hook(leave)


def attribute(events, parts: set[str]) -> dict[str, float]:
    """Each event's self time (µs) to its nearest labelled ancestor (itself if labelled)."""
    totals: collections.Counter = collections.Counter()

    def walk(event, owner):
        owner = event.name if event.name in parts else owner
        totals[owner] += event.self_cpu_time_total
        for child in event.cpu_children:
            walk(child, owner)

    for event in events:
        walk(event, "model forward (other)")
    return totals


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    settings = Settings(max_new_tokens=args.steps + 1)
    engine = MedGemmaEngine.load(settings)
    query = Query(tile(), DEFAULT_QUESTION, explain=True)
    starts: list[float] = []

    def enter(module, args):
        starts.append(time.perf_counter())
        module._range = record_function("decode step" if len(starts) > 1 else "prefill")
        module._range.__enter__()

    engine.model.register_forward_pre_hook(enter)
    engine.model.register_forward_hook(lambda module, args, output: module._range.__exit__(None, None, None))
    engine.generate([query])  # unprofiled: the step times a user sees
    plain = [b - a for a, b in zip(starts[1:], starts[2:])]
    starts.clear()
    label_modules(engine.model)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        engine.generate([query])
    done = time.perf_counter()
    profiled_steps = len(starts) - 1
    events = prof.events()
    steps = [e for e in events if e.name == "decode step" and e.cpu_parent is None]
    parts = {p for p in (_part(n, m) for n, m in [("lm_head", engine.model.lm_head),
             *engine.model.model.language_model.named_modules()]) if p}
    inside = attribute(steps, parts)
    # Wall time of the decode steps: from the first decode forward to generate's return.
    wall_us = (done - starts[1]) * 1e6
    forward_us = sum(e.cpu_time_total for e in steps)
    inside["between forwards (generate loop, stop check, logits)"] = wall_us - forward_us
    load = os.getloadavg()
    print(f"\nquantization={settings.quantization}  threads={torch.get_num_threads()}  "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"unprofiled decode: {sum(plain) / len(plain):.3f} s/token over {len(plain)} steps "
          f"(median {sorted(plain)[len(plain) // 2]:.3f})")
    print(f"profiled: {profiled_steps} steps, {wall_us / 1e6 / profiled_steps:.3f} s/token\n")
    print("| part | ms per token | share |\n|---|---|---|")
    for part, us in sorted(inside.items(), key=lambda kv: -kv[1]):
        print(f"| {part} | {us / 1e3 / profiled_steps:.1f} | {us / wall_us:.0%} |")
    print("\nTop operators in decode steps (self time, ms per token, calls per token):")
    ops = collections.Counter()
    calls = collections.Counter()

    def walk(event):
        if event.name.startswith("aten::"):
            key = (event.name, str(event.input_shapes)[:80])
            ops[key] += event.self_cpu_time_total
            calls[key] += 1
        for child in event.cpu_children:
            walk(child)

    for step in steps:
        walk(step)
    for (name, shapes), us in ops.most_common(25):
        print(f"  {us / 1e3 / profiled_steps:7.2f} ms  {calls[(name, shapes)] / profiled_steps:6.1f}x  {name} {shapes}")


if __name__ == "__main__":
    main()

"""MedGemma 4B's vision tower alone, as served and row-major, timed interleaved with a per-op split.

    .venv/bin/python -m bench.vision_tower [--rounds 3] [--threads 2] [--layers 27] [--compile]

Builds SigLIP with MedGemma 4B's exact vision config (27 layers, 1152 wide, 896 px → 4,096 patch
tokens) from random bf16 weights (~0.8 GB, same cost as the real ones) without loading the 8.6 GB
model, then alternates the variants on one image so that a shared machine's load hits them alike.
Prints each variant's median wall time, its ratio to the served tower, the max abs difference of
the image embeddings, and the median self time of the ops that make up the tower.
"""

import argparse
import os
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile
from transformers import SiglipVisionConfig, SiglipVisionModel

from healer.model.vision import row_major

OPS = {
    "attention (sdpa)": "aten::_scaled_dot_product_flash_attention_for_cpu",
    "linears (addmm)": "aten::addmm",
    "copies": "aten::copy_",
    "GELU (tanh)": "aten::gelu",
    "adds": "aten::add",
    "layer norms": "aten::native_layer_norm",
}

# MedGemma 4B's vision_config (config.json), written out so the script needs no checkpoint.
MEDGEMMA_4B_VISION = dict(
    hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
    image_size=896, patch_size=14, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
    vision_use_head=False,
)


def build_tower(layers: int) -> SiglipVisionModel:
    torch.manual_seed(0)  # every variant gets the same weights
    config = SiglipVisionConfig(**{**MEDGEMMA_4B_VISION, "num_hidden_layers": layers})
    config._attn_implementation = "sdpa"  # what transformers picks for Gemma 3 on the CPU
    return SiglipVisionModel(config).to(torch.bfloat16).eval()


def variants(layers: int, compiled: bool) -> dict:
    served = build_tower(layers)
    fixed = build_tower(layers)
    fixed.embeddings.register_forward_hook(row_major)
    found = {"as served": served, "row-major": fixed}
    if compiled:
        tower = build_tower(layers)
        tower.embeddings.register_forward_hook(row_major)
        found["row-major + torch.compile"] = torch.compile(tower, fullgraph=True, dynamic=False)
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--layers", type=int, default=27)
    parser.add_argument("--compile", action="store_true", help="add a torch.compile (inductor) variant")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pixels = (torch.rand(1, 3, 896, 896, generator=torch.Generator().manual_seed(1)) * 2 - 1).to(torch.bfloat16)
    towers = variants(args.layers, args.compile)
    embeddings, walls, ops = {}, {name: [] for name in towers}, {name: {op: [] for op in OPS} for name in towers}
    with torch.inference_mode():
        for name, tower in towers.items():
            started = time.perf_counter()
            embeddings[name] = tower(pixel_values=pixels).last_hidden_state.float()
            print(f"first call, {name}: {time.perf_counter() - started:.1f} s", flush=True)
        for round_ in range(args.rounds):
            for name, tower in towers.items():
                with profile(activities=[ProfilerActivity.CPU]) as profiled:
                    started = time.perf_counter()
                    tower(pixel_values=pixels)
                    walls[name].append(time.perf_counter() - started)
                self_s = {event.key: event.self_cpu_time_total / 1e6 for event in profiled.key_averages()}
                for part, op in OPS.items():
                    ops[name][part].append(self_s.get(op, 0.0))
            print(f"round {round_}: load {os.getloadavg()[0]:.2f}, "
                  + ", ".join(f"{name} {walls[name][-1]:.2f} s" for name in towers), flush=True)
    base = "as served"
    print(f"\n| | {' | '.join(towers)} |\n|---|{'---|' * len(towers)}")
    median = {name: statistics.median(walls[name]) for name in towers}
    print("| wall, median (s) | " + " | ".join(f"{median[n]:.2f}" for n in towers) + " |")
    print("| ratio to as served | " + " | ".join(f"{median[n] / median[base]:.2f}" for n in towers) + " |")
    for part in OPS:
        print(f"| {part} (s) | " + " | ".join(f"{statistics.median(ops[n][part]):.2f}" for n in towers) + " |")
    print("| max abs diff of the embeddings | "
          + " | ".join(f"{(embeddings[n] - embeddings[base]).abs().max().item():.3g}" for n in towers) + " |")
    print(f"\nthreads {args.threads}, layers {args.layers}, load average now {os.getloadavg()}")


if __name__ == "__main__":
    main()

"""Decode levers measured against each other in one process, interleaved, at full size.

    MODEL_DIR=/work/cache/models/medgemma-4b QUANTIZATION=int8 DEVICE=cpu \
        python -m bench.decode_ab --steps 16 --rounds 3 baseline unfused static

The CPU is shared and its load moves from minute to minute, so each lever runs alternately with
the others in the same process, on the same prompt (one real 896 px H&E tile and the served
question, prefilled once): the ratios within a round are what to trust. Each run is the engine's
own `generate` from the prompt's last token, through `--steps` decode steps, with the engine's
stopping criteria and generation config. Prints seconds per token, per lever and round.
"""

import argparse
import contextlib
import copy
import os
import statistics
import time

import torch
from transformers import StoppingCriteriaList

from bench.decode_profile import tile
from healer.model import cpu_int8
from healer.model.engine import Query
from healer.model.medgemma import MedGemmaEngine, _RowStop
from healer.screening.prompts import DEFAULT_QUESTION
from healer.settings import Settings


class _UnfusedMLP(torch.nn.Module):
    def __init__(self, fused: cpu_int8.Int8GatedMLP):
        super().__init__()
        self.gate_proj, self.up_proj = _split(fused.gate_up_proj, [fused.intermediate_size] * 2)
        self.down_proj, self.act_fn = fused.down_proj, fused.act_fn

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


def _split(fused: cpu_int8.Int8Linear, sizes: list[int]) -> list[cpu_int8.Int8Linear]:
    return [cpu_int8.Int8Linear(w.clone(), s.clone())
            for w, s in zip(fused.weight.split(sizes), fused.scales.split(sizes))]


class Levers:
    """Each lever is a context in which generate runs. The engine loads with q‖k‖v and gate‖up
    fused; `unfused` swaps in separate q, k, v, gate and up modules cut from the same rows (both
    kept: ~2 GiB more than either alone)."""

    def __init__(self, engine: MedGemmaEngine):
        self.engine = engine
        self._swaps: list | None = None

    def _unfused_swaps(self) -> list:
        if self._swaps is None:
            swaps = []
            for layer in self.engine.model.model.language_model.layers:
                attention = layer.self_attn
                fused = (attention.q_proj, attention.k_proj, attention.v_proj)
                swaps.append((attention, fused, tuple(_split(attention.qkv.qkv_proj, attention.qkv.sizes))))
                swaps.append((layer, layer.mlp, _UnfusedMLP(layer.mlp)))
            self._swaps = swaps
        return self._swaps

    @contextlib.contextmanager
    def unfused(self):
        swaps = self._unfused_swaps()
        self._apply(swaps, 2)
        try:
            yield {}
        finally:
            self._apply(swaps, 1)

    @staticmethod
    def _apply(swaps, index):
        for owner, *choices in swaps:
            chosen = choices[index - 1]
            if isinstance(chosen, tuple):
                owner.q_proj, owner.k_proj, owner.v_proj = chosen
            else:
                owner.mlp = chosen

    @contextlib.contextmanager
    def baseline(self):
        yield {}

    @contextlib.contextmanager
    def static(self):
        yield {"cache_implementation": "static"}

    @contextlib.contextmanager
    def one_thread(self):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield {}
        finally:
            torch.set_num_threads(threads)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("levers", nargs="+")
    args = parser.parse_args()
    engine = MedGemmaEngine.load(Settings(max_new_tokens=args.steps))
    levers = Levers(engine)
    with torch.inference_mode():
        inputs = engine._inputs([Query(tile(), DEFAULT_QUESTION, explain=True)])
        prompt = {k: v[:, :-1] for k, v in inputs.items() if k != "pixel_values"}
        started = time.perf_counter()
        prefilled = engine.model(**prompt, pixel_values=inputs["pixel_values"], use_cache=True).cache
        print(f"prefill {time.perf_counter() - started:.1f} s, {inputs['input_ids'].shape[1]} tokens")
        static_prefilled: dict = {}
    forwards = [0]
    engine.model.register_forward_pre_hook(lambda m, a: forwards.__setitem__(0, forwards[0] + 1))
    results: dict[str, list[float]] = {name: [] for name in args.levers}
    answers: dict[str, list] = {}
    for round_ in range(args.rounds):
        for name in args.levers:
            with contextlib.ExitStack() as stack, torch.inference_mode():
                extra: dict = {}
                for part in name.split("+"):  # levers combine: fused+static
                    extra.update(stack.enter_context(getattr(levers, part)()))
                config = copy.copy(engine.generation_config)
                for key, value in extra.items():
                    setattr(config, key, value)
                if extra.get("cache_implementation") == "static":
                    cache = static_prefilled.get("cache")
                    if cache is None:
                        from transformers import StaticCache
                        cache = StaticCache(config=engine.model.config,
                                            max_cache_len=inputs["input_ids"].shape[1] + args.steps + 1)
                        engine.model(**prompt, pixel_values=inputs["pixel_values"], cache=cache, use_cache=True)
                        static_prefilled["cache"] = cache
                    cache = copy.deepcopy(cache)  # it counts what it holds: a fresh copy per run
                    config.cache_implementation = None
                else:
                    cache = copy.deepcopy(prefilled)
                forwards[0] = 0
                started = time.perf_counter()
                out = engine.model.generate(
                    input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                    past_key_values=cache, generation_config=config,
                    stopping_criteria=StoppingCriteriaList(
                        [_RowStop(engine, inputs["input_ids"].shape[1], [True])]),
                )
                seconds = (time.perf_counter() - started) / forwards[0]
            results[name].append(seconds)
            answers.setdefault(name, out.sequences[0, inputs["input_ids"].shape[1]:].tolist())
            print(f"round {round_} {name:12s} {seconds:.3f} s/token ({forwards[0]} steps) "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)
    print("\n| lever | s/token per round | median |\n|---|---|---|")
    for name, values in results.items():
        same = "same tokens" if answers[name] == answers[args.levers[0]] else "DIFFERENT tokens"
        print(f"| {name} | {' / '.join(f'{v:.3f}' for v in values)} | {statistics.median(values):.3f} ({same}) |")


if __name__ == "__main__":
    main()

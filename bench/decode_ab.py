"""Decode levers measured against each other in one process, interleaved, at full size.

    MODEL_DIR=/work/cache/models/medgemma-4b QUANTIZATION=int8 DEVICE=cpu \
        python -m bench.decode_ab --steps 16 --rounds 3 baseline weight_only static

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
from healer.text.prompts import DEFAULT_QUESTION
from healer.settings import Settings


def as_weight_only(linear: cpu_int8.PackedInt8Linear) -> cpu_int8.Int8RowsLinear:
    """The same int8 rows and scales behind the weight-only kernel (bf16 activations): the
    int8 path as it was before activations were quantized (AMX's prepacked layers only)."""
    rows = linear.packed.to_dense().t().contiguous()  # oneDNN holds the weight as [in, out]
    return cpu_int8.Int8RowsLinear(rows, linear.scales.to(torch.bfloat16))


class Levers:
    """Each lever is a context in which generate runs. `weight_only` runs every int8 layer
    linear through the weight-only kernel instead (both kept: ~3.2 GiB more at full size)."""

    def __init__(self, engine: MedGemmaEngine):
        self.engine = engine
        self._weight_only: list | None = None

    def _weight_only_pairs(self) -> list:
        if self._weight_only is None:
            layers = self.engine.model.model.language_model.layers
            self._weight_only = [(m, as_weight_only(m)) for m in layers.modules() if isinstance(m, cpu_int8.PackedInt8Linear)]
        return self._weight_only

    @contextlib.contextmanager
    def weight_only(self):
        pairs = self._weight_only_pairs()
        for int8, plain in pairs:
            int8.forward = plain.forward
        try:
            yield {}
        finally:
            for int8, _ in pairs:
                del int8.forward

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

"""The served engine, ready to answer: loaded once (ENGINE: transformers in this process, or an
OpenAI-compatible server), the demo model announced loudly, warmed up, and, in this process, the
warm-up's time held against what the docs state for this CPU class.

Shared by the service's start-up (healer.api.app) and each slide worker task
(healer.slides.worker), so both answer with the same model in the same way.
"""

import logging
import time

from healer import metrics
from healer.model.cpu_timings import WARMUP_SLACK, expected_answer_only_s, warmup_too_slow
from healer.model.engine import Engine
from healer.text.prompts import DEMO_WARNING
from healer.settings import Settings

log = logging.getLogger("healer")


def open_engine(settings: Settings) -> Engine:
    """The engine ENGINE names, loaded (not warmed up): transformers in this process, or the
    OpenAI-compatible server at ENGINE_URL. Each loads its libraries only when chosen."""
    if settings.engine == "vllm":
        from healer.model.openai_engine import OpenAIEngine

        return OpenAIEngine.load(settings)
    from healer.model.medgemma import MedGemmaEngine

    return MedGemmaEngine.load(settings)


def load_engine(settings: Settings) -> Engine:
    engine = open_engine(settings)
    if engine.info.demo:
        _loudly(DEMO_WARNING)
    started = time.perf_counter()
    engine.warmup()
    seconds = time.perf_counter() - started
    metrics.WARMUP.set(seconds)
    log.info("warm-up answered in %.1f s", seconds)
    if settings.engine == "transformers":  # another machine's warm-up is not held to this CPU's times
        from healer.model.medgemma import usable_cpus

        judge_warmup(engine, seconds, usable_cpus())
    return engine


def judge_warmup(engine: Engine, seconds: float, cpus: int) -> None:
    """Say loudly when the warm-up took far longer than this CPU class's measured time: wrong
    kernels for the CPU, or CPUs shared or throttled, look the same to a user (a hung service)."""
    compute = engine.info.compute
    if compute is None or compute.cpu_class is None or not engine.parameters:
        return
    expected = expected_answer_only_s(compute.cpu_class, engine.info.quantization, engine.parameters, cpus)
    if expected is None:
        log.warning("no measured time for CPU class %s with QUANTIZATION=%s: the warm-up's %.1f s is not judged",
                    compute.cpu_class, engine.info.quantization, seconds)
    elif warmup_too_slow(seconds, expected):
        _loudly(f"The warm-up took {seconds:.1f} s: over {WARMUP_SLACK:.0f}x the ~{expected:.1f} s measured "
                f"on CPU class {compute.cpu_class} with {cpus} CPUs (docs/performance.md). Every answer "
                "will be as slow. Check the kernels logged above, the CPUs this instance really has "
                "(CPU throttling, other work) and docs/deploy.md.")


def _loudly(message: str) -> None:
    for line in ("=" * 72, message, "=" * 72):
        log.warning(line)

"""What an answer-only request takes at MedGemma 4B's size, per CPU class, as the benchmark
measured it: the time the start-up warm-up is held to (healer.model.load). No torch here: the
service imports it before it knows whether it serves a model at all.
"""

# An answer-only request (what the warm-up asks) at MedGemma 4B's size on 2 CPUs, per class and
# QUANTIZATION, as bench/run.py measured it (docs/performance.md, "Per CPU class"): the time the
# warm-up is held to, scaled by the model's size and the CPUs it has.
MEDGEMMA_4B_PARAMETERS = 4.30e9
ANSWER_ONLY_S = {
    ("amx", "int8"): 17.5, ("amx", "none"): 20.1,  # bench/results/medgemma-4b-20261127-1445.md
}
# Well past any machine's noise, and a fixed allowance for what does not scale with the model.
WARMUP_SLACK, WARMUP_ALLOWANCE_S = 3.0, 10.0


def expected_answer_only_s(cpu_class: str, quantization: str, parameters: int, cpus: int) -> float | None:
    """What an answer-only request should take here; None for a class not measured."""
    measured = ANSWER_ONLY_S.get((cpu_class, quantization))
    if measured is None:
        return None
    return measured * parameters / MEDGEMMA_4B_PARAMETERS * 2 / max(1, cpus)


def warmup_too_slow(seconds: float, expected_s: float) -> bool:
    return seconds > WARMUP_SLACK * expected_s + WARMUP_ALLOWANCE_S

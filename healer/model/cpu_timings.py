"""What an answer-only request takes at MedGemma 4B's size, per CPU class, as the benchmark
measured it: the time the start-up warm-up is held to (healer.model.load). No torch here: the
service imports it before it knows whether it serves a model at all.
"""

# An answer-only request (what the warm-up asks) at MedGemma 4B's size on 2 CPUs, per class and
# QUANTIZATION, as bench/run.py measured it (docs/performance.md, "Per CPU class at full size"): the time the
# warm-up is held to, scaled by the model's size and the CPUs it has.
MEDGEMMA_4B_PARAMETERS = 4.30e9
# The avx2, avx512 and avx512_vnni rows were forced on an AVX-512 BF16 EPYC: a real machine of
# those classes is likely slower, which the slack below absorbs.
ANSWER_ONLY_S = {
    ("amx", "int8"): 17.5, ("amx", "none"): 20.1,  # bench/results/medgemma-4b-20261127-1445.md
    ("avx512_bf16", "int8"): 42.5, ("avx512_bf16", "none"): 44.3,  # …-avx512_bf16-20261206-2105.md
    ("avx512_vnni", "int8"): 61.6,  # …-avx512_vnni-20261206-2116.md
    ("avx512", "int8"): 74.5,  # …-avx512-20261206-2130.md
    ("avx2", "int8"): 70.5, ("avx2", "none"): 70.9,  # …-avx2-20261206-2033.md
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

"""The CPU's class comes from its flags, lowered by the caps a deployment or a test sets; each
class gets the kernels docs/performance.md states for it, and never one that is slow or inexact there."""

import pytest
import torch

from healer.model.cpu_class import CLASSES, detect, forcing_environment
from healer.model.cpu_kernels import plan_for

BASE = "fpu sse sse2 ssse3 sse4_1 sse4_2 popcnt avx f16c"
AVX2 = BASE + " avx2 fma bmi1 bmi2"
AVX512 = AVX2 + " avx512f avx512dq avx512cd avx512bw avx512vl"
# /proc/cpuinfo as Cloud Run's machines report it (flags abridged to those that matter here).
MACHINES = {
    "AMD EPYC 7B13 (Zen 3, Milan)": (AVX2 + " sha_ni vaes", "avx2"),
    "Intel Xeon @ 2.00GHz (Skylake)": (AVX512, "avx512"),
    "Intel Xeon @ 2.80GHz (Cascade Lake)": (AVX512 + " avx512_vnni", "avx512_vnni"),
    "Intel Xeon @ 2.60GHz (Ice Lake)": (AVX512 + " avx512ifma avx512vbmi avx512_vnni avx512_vbmi2", "avx512_vnni"),
    "AMD EPYC 9B14 (Zen 4, Genoa)": (AVX512 + " avx512_vnni avx512_bf16 avx512ifma", "avx512_bf16"),
    "Intel Xeon Platinum 8481C (Sapphire Rapids)": (
        AVX512 + " avx512_vnni avx512_bf16 amx_bf16 avx512_fp16 amx_tile amx_int8", "amx"),
    "an old Xeon without AVX2": (BASE, "baseline"),
}


def cpuinfo(tmp_path, model: str, flags: str):
    path = tmp_path / "cpuinfo"
    processor = f"processor\t: {{n}}\nmodel name\t: {model}\nflags\t\t: {flags}\n"
    path.write_text("\n".join(processor.format(n=n) for n in range(2)))
    return path


@pytest.mark.parametrize("model", MACHINES)
def test_each_machine_gets_the_class_its_flags_allow(tmp_path, model):
    flags, expected = MACHINES[model]
    cpu = detect(cpuinfo(tmp_path, model, flags), environ={})
    assert (cpu.name, cpu.hardware, cpu.model, cpu.capped_by) == (expected, expected, model, ())


@pytest.mark.parametrize("name", CLASSES[1:])
def test_the_forcing_caps_make_the_best_machine_compute_as_each_class(tmp_path, name):
    best = cpuinfo(tmp_path, "Sapphire Rapids", MACHINES["Intel Xeon Platinum 8481C (Sapphire Rapids)"][0])
    cpu = detect(best, environ=forcing_environment(name))
    assert cpu.name == name and cpu.hardware == "amx"
    assert bool(cpu.capped_by) == (name != "amx")


def test_a_cap_names_itself_and_never_raises_the_class(tmp_path):
    zen3 = cpuinfo(tmp_path, "Zen 3", MACHINES["AMD EPYC 7B13 (Zen 3, Milan)"][0])
    assert detect(zen3, environ={"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}).name == "avx2"
    zen4 = cpuinfo(tmp_path, "Zen 4", MACHINES["AMD EPYC 9B14 (Zen 4, Genoa)"][0])
    capped = detect(zen4, environ={"ONEDNN_MAX_CPU_ISA": "avx512_core", "ATEN_CPU_CAPABILITY": "avx2"})
    assert capped.name == "avx2"
    assert capped.capped_by == ("ONEDNN_MAX_CPU_ISA=avx512_core", "ATEN_CPU_CAPABILITY=avx2")
    assert detect(zen4, environ={"ONEDNN_MAX_CPU_ISA": "ALL", "ATEN_CPU_CAPABILITY": "avx512"}).capped_by == ()


def test_a_machine_without_proc_cpuinfo_is_the_baseline(tmp_path):
    assert detect(tmp_path / "missing", environ={}).name == "baseline"


def test_an_unknown_class_cannot_be_forced():
    with pytest.raises(ValueError, match="avx2"):
        forcing_environment("avx3")


# What each class runs (the module docstring of healer/model/cpu_kernels.py, as a table).
KERNELS = {
    # class: (compute for bf16 weights, fused int8 layers)
    "baseline": (torch.float32, "widened"),
    "avx2": (torch.float32, "widened"),
    "avx512": (torch.float32, "widened"),
    "avx512_vnni": (torch.float32, "int8"),
    "avx512_bf16": (torch.bfloat16, "int8"),
    "amx": (torch.bfloat16, "packed"),
}


@pytest.mark.parametrize("name", CLASSES)
def test_each_class_gets_its_documented_kernels(tmp_path, name):
    machine = {expected: flags for flags, expected in MACHINES.values()}[name]
    plan = plan_for(detect(cpuinfo(tmp_path, name, machine), environ={}), "int8")
    assert (plan.compute, plan.int8.fused) == KERNELS[name]
    assert plan.int8.widen_to == plan.compute
    phases = plan.phases()
    assert set(phases) == {"vision", "prefill", "decode"}
    assert ("fp32" in phases["vision"]) == (plan.compute == torch.float32)
    assert ("oneDNN prepacked" in phases["decode"]) == (name == "amx")


@pytest.mark.parametrize("name", ["baseline", "avx2", "avx512"])
def test_no_class_without_vnni_multiplies_int8_by_int8(tmp_path, name):
    """oneDNN's prepacked int8 runs in reference code without AMX (~300x slower) and
    torch._int_mm sums in saturating int16 without VNNI: neither may run there."""
    machine = {expected: flags for flags, expected in MACHINES.values()}[name]
    plan = plan_for(detect(cpuinfo(tmp_path, name, machine), environ={}), "int8")
    assert plan.int8.fused == "widened"
    assert "int8 x int8" not in " ".join(plan.phases().values())


def test_bf16_weights_without_int8_still_compute_as_the_class_allows(tmp_path):
    zen3 = detect(cpuinfo(tmp_path, "Zen 3", MACHINES["AMD EPYC 7B13 (Zen 3, Milan)"][0]), environ={})
    phases = plan_for(zen3, "none").phases()
    assert "fp32" in phases["vision"] and "fp32" in phases["prefill"] and phases["decode"] == "bf16"

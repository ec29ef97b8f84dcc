"""Which class of x86 CPU this process computes on: what the hardware has, capped by the
environment variables that cap the kernel libraries.

Cloud Run does not let a service choose its CPU: an instance may land on an AVX2-only AMD EPYC,
an AVX-512 Xeon with or without VNNI, a Zen 4 with AVX-512 BF16, or a Xeon with AMX. The fast
kernels differ between them (healer.model.cpu_kernels chooses per class), so the class is read
once, at start-up, from two places:

- the hardware: the flags the kernel reports in /proc/cpuinfo;
- the caps: `ONEDNN_MAX_CPU_ISA` (oneDNN: bf16 and int8 matmuls, int8 × int8) and
  `ATEN_CPU_CAPABILITY` (ATen's own vectorized kernels, `_weight_int8pack_mm` among them). A test
  or a benchmark sets them to make one machine behave as a lesser one (`forcing_environment`);
  `MKL_ENABLE_INSTRUCTIONS` caps MKL's fp32 matmuls too, for fidelity, and decides nothing here.

    baseline < avx2 < avx512 < avx512_vnni < avx512_bf16 < amx
"""

import os
from dataclasses import dataclass
from pathlib import Path

CLASSES = ("baseline", "avx2", "avx512", "avx512_vnni", "avx512_bf16", "amx")

# What a class needs in /proc/cpuinfo's flags, on top of the class below it.
_NEEDS = {
    "avx2": {"avx2", "fma"},
    "avx512": {"avx512f", "avx512bw", "avx512vl", "avx512dq"},  # oneDNN's and ATen's "AVX512 core"
    "avx512_vnni": {"avx512_vnni"},
    "avx512_bf16": {"avx512_bf16"},
    "amx": {"amx_tile", "amx_int8", "amx_bf16"},
}

# Each class forced on a better machine: the caps that make the libraries use only its ISA.
FORCING = {
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "avx512": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "ATEN_CPU_CAPABILITY": "avx512"},
    "avx512_vnni": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI", "ATEN_CPU_CAPABILITY": "avx512"},
    "avx512_bf16": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16", "ATEN_CPU_CAPABILITY": "avx512"},
    "amx": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX", "ATEN_CPU_CAPABILITY": "avx512"},
}
CAP_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")

# oneDNN's ISA names (its docs, "CPU dispatcher control"), as the class they allow at most.
_ONEDNN_CAPS = {
    "SSE41": "baseline", "AVX": "baseline",
    "AVX2": "avx2", "AVX2_VNNI": "avx2", "AVX2_VNNI_2": "avx2",
    "AVX512_CORE": "avx512", "AVX512_CORE_VNNI": "avx512_vnni",
    "AVX512_CORE_BF16": "avx512_bf16", "AVX512_CORE_FP16": "avx512_bf16", "AVX10_1_512": "avx512_bf16",
}
_ATEN_CAPS = {"DEFAULT": "baseline", "AVX2": "avx2"}  # AVX512: no cap below AVX-512


@dataclass(frozen=True)
class CpuClass:
    name: str  # one of CLASSES: what the kernels may use
    hardware: str  # what the CPU itself has
    model: str  # /proc/cpuinfo's model name
    capped_by: tuple[str, ...] = ()  # "VARIABLE=value" for each cap that lowered the class

    def at_least(self, name: str) -> bool:
        return CLASSES.index(self.name) >= CLASSES.index(name)


def hardware_class(flags: set[str]) -> str:
    reached = "baseline"
    for name in CLASSES[1:]:
        if not _NEEDS[name] <= flags:
            break
        reached = name
    return reached


def detect(cpuinfo: Path = Path("/proc/cpuinfo"), environ: dict[str, str] | None = None) -> CpuClass:
    """This machine's class under the caps in `environ` (the process's environment by default)."""
    environ = os.environ if environ is None else environ
    flags: set[str] = set()
    model = "unknown CPU"
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "flags" and not flags:
                flags = set(value.split())
            elif key.strip() == "model name" and model == "unknown CPU":
                model = value.strip()
    except OSError:
        pass
    hardware = hardware_class(flags)
    name, capped_by = hardware, []
    caps = [(v, _ONEDNN_CAPS) for v in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")] + [("ATEN_CPU_CAPABILITY", _ATEN_CAPS)]
    for variable, table in caps:
        value = environ.get(variable)
        allowed = table.get(value.strip().upper()) if value else None  # None: no cap below AMX
        if allowed is not None and CLASSES.index(allowed) < CLASSES.index(hardware):
            capped_by.append(f"{variable}={value}")
            name = min(name, allowed, key=CLASSES.index)
    return CpuClass(name, hardware, model, tuple(capped_by))


def forcing_environment(name: str) -> dict[str, str]:
    """The environment variables that make a better machine compute as class `name`."""
    if name not in FORCING:
        raise ValueError(f"unknown CPU class {name!r}: one of {', '.join(FORCING)}")
    return dict(FORCING[name])

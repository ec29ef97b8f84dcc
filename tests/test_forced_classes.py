"""Each CPU class, forced on this machine with the libraries' own caps, computes with the kernels
documented for it, runs none of oneDNN's reference code, and answers as every other class does
within stated tolerances (docs/performance.md, "Kernels per CPU class").

A class above this machine's hardware cannot be forced: its tests are skipped, and say why.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from healer.model.cpu_class import CLASSES, detect, forcing_environment

ROOT = Path(__file__).resolve().parent.parent
HARDWARE = detect(environ={}).hardware
FORCED = [c for c in CLASSES[1:]]

# Tolerances on the demo model's answers (3 real tiles; measured spreads in the comments).
SAME_WEIGHTS = 0.01  # one QUANTIZATION, any two classes: P(yes) and answer mass (≤ 0.004 measured)
INT8_VS_BF16 = 0.03  # int8 against bf16 weights, any classes (≤ 0.016 measured)


def run_forced(name: str, model_dir: Path) -> tuple[dict, list[str]]:
    """The probe's report and oneDNN's verbose lines, from a child process forced to `name`."""
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")}
    env.update(forcing_environment(name), ONEDNN_VERBOSE="1", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "forced_class.py"), str(model_dir)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    [report] = [line.split(" ", 1)[1] for line in done.stdout.splitlines() if line.startswith("FORCED-CLASS ")]
    verbose = [line for line in done.stdout.splitlines() if line.startswith("onednn_verbose") and ",exec," in line]
    return json.loads(report), verbose


@pytest.fixture(scope="module")
def forced(demo_model_dir) -> dict:
    """name → (report, verbose lines) for every class this machine can be forced to."""
    return {name: run_forced(name, demo_model_dir) for name in FORCED if CLASSES.index(name) <= CLASSES.index(HARDWARE)}


def reached(name: str, forced: dict) -> tuple[dict, list[str]]:
    if name not in forced:
        pytest.skip(f"this machine's CPU is {HARDWARE}: class {name} cannot be forced here")
    return forced[name]


@pytest.mark.parametrize("name", FORCED)
def test_a_forced_class_says_so_and_computes_with_its_kernels(forced, name):
    report, _ = reached(name, forced)
    for quantization, ran in report.items():
        assert ran["cpu_class"] == name
        assert bool(ran["capped_by"]) == (name != HARDWARE)
        fp32 = CLASSES.index(name) < CLASSES.index("avx512_bf16")
        assert ("Fp32Linear" in ran["modules"]) == fp32 and ("Fp32Conv2d" in ran["modules"]) == fp32
        assert "fp32" in ran["kernels"]["vision"] if fp32 else ran["kernels"]["vision"] == "bf16"
    assert ("PackedInt8Linear" in report["int8"]["modules"]) == (name == "amx")


@pytest.mark.parametrize("name", FORCED)
def test_no_class_runs_onednns_reference_code(forced, name):
    """Reference kernels (`ref:…`, `ref_int8:…`) are what oneDNN runs when it has nothing for the
    ISA: the prepacked int8 matmul on a CPU without AMX ran there, ~300x slower."""
    _, verbose = reached(name, forced)
    assert verbose, "oneDNN ran nothing: ONEDNN_VERBOSE did not reach the child"
    implementations = {line.split(",")[5] for line in verbose}
    assert not [impl for impl in implementations if impl.startswith("ref")], implementations


@pytest.mark.parametrize("name", ["avx2", "avx512"])
def test_no_class_without_vnni_multiplies_int8_by_int8(forced, name):
    """Without VNNI, oneDNN's int8 products sum pairs in saturating int16: an int8 activation
    must never meet an int8 weight there (test_int8_products_are_exact_only_with_vnni)."""
    report, verbose = reached(name, forced)
    assert not [line for line in verbose if "src_s8" in line or "src:s8" in line]
    assert "PackedInt8Linear" not in report["int8"]["modules"]
    assert "int8 x int8" not in " ".join(report["int8"]["kernels"].values())


@pytest.mark.parametrize("name", FORCED)
def test_every_class_gives_the_same_answers_within_tolerance(forced, name):
    report, _ = reached(name, forced)
    reference, _ = forced[HARDWARE]
    for quantization, ran in report.items():
        for tolerance, against in ((SAME_WEIGHTS, reference[quantization]), (INT8_VS_BF16, reference["none"])):
            for got, want in zip(ran["answers"], against["answers"], strict=True):
                p_yes, mass, step, label = got
                assert step == want[2]  # the same answer step
                assert p_yes == pytest.approx(want[0], abs=tolerance)
                assert mass == pytest.approx(want[1], abs=tolerance)
                if abs(want[0] - 0.5) > tolerance:  # a label can only flip at the threshold
                    assert label == want[3]


PRODUCT = """
import torch
torch.manual_seed(0)
a = torch.randint(-127, 128, (64, 2560), dtype=torch.int8)
b = torch.randint(-127, 128, (256, 2560), dtype=torch.int8)
a[0], b[0] = 127, 127  # pairs of extremes: 127*127*2 does not fit int16
print(torch.equal(torch._int_mm(a, b.t()).long(), a.long() @ b.long().t()))
"""


@pytest.mark.parametrize(("name", "exact"), [("avx2", False), ("avx512", False), ("avx512_vnni", True)])
def test_int8_products_are_exact_only_with_vnni(name, exact):
    """Why healer.model.cpu_kernels gives int8 x int8 to VNNI and AMX only."""
    if CLASSES.index(HARDWARE) < CLASSES.index("avx512_vnni"):
        pytest.skip(f"this machine's CPU is {HARDWARE}: no VNNI to compare with")
    env = {**os.environ, **forcing_environment(name)}
    done = subprocess.run([sys.executable, "-c", PRODUCT], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == str(exact)

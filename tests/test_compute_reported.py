"""What computes the answers is said where operators look: GET /, every answer, /metrics and the
start-up log; a warm-up far slower than its CPU class's measured time is said loudly."""

import dataclasses
import logging

import pytest
from fastapi.testclient import TestClient

from healer.api.app import create_app
from healer.model.cpu_class import CLASSES
from healer.model.cpu_timings import ANSWER_ONLY_S, expected_answer_only_s
from healer.model.engine import Compute
from healer.model.fake import FakeEngine
from healer.model.load import judge_warmup
from healer.settings import Settings
from tests.test_operations import metric
from tests.test_predict import predict

AVX2 = Compute("AMD EPYC 7B13", "avx2", {"vision": "fp32 from bf16 weights, attention fp32",
                                         "prefill": "int8 weights widened to fp32; attention fp32",
                                         "decode": "int8 weight-only (torch._weight_int8pack_mm)"},
               ("ONEDNN_MAX_CPU_ISA=AVX2",))


def engine_on(compute: Compute | None, parameters: int | None = None, quantization: str = "int8") -> FakeEngine:
    engine = FakeEngine()
    engine.info = dataclasses.replace(engine.info, compute=compute, quantization=quantization)
    engine.parameters = parameters
    return engine


def test_the_health_check_and_every_answer_name_the_cpu_class_and_kernels(tmp_path, he_tile_png):
    with TestClient(create_app(Settings(model_dir=tmp_path), engine=engine_on(AVX2))) as client:
        compute = client.get("/").json()["model"]["compute"]
        assert compute == {"processor": "AMD EPYC 7B13", "cpu_class": "avx2", "capped_by": ["ONEDNN_MAX_CPU_ISA=AVX2"],
                           "kernels": AVX2.kernels}
        assert predict(client, he_tile_png).json()["model"]["compute"] == compute
        shown = client.get("/metrics").text
    assert metric(shown, "healer_compute_info", processor="AMD EPYC 7B13", cpu_class="avx2", **AVX2.kernels) == 1.0


def test_the_real_engine_reports_this_machines_class(client):
    from healer.model.cpu_class import detect

    compute = client.get("/").json()["model"]["compute"]
    assert compute["cpu_class"] == detect().name and compute["processor"] == detect().model
    assert set(compute["kernels"]) == {"vision", "prefill", "decode"}


def test_the_start_up_log_names_the_class_the_kernels_and_the_warm_up_time(demo_model_dir, caplog):
    from healer.model.load import load_engine
    from tests.conftest import demo_settings

    with caplog.at_level(logging.INFO):
        engine = load_engine(demo_settings(demo_model_dir, quantization="int8"))
    said = caplog.text
    assert f"CPU class {engine.info.compute.cpu_class}" in said
    for phase, kernel in engine.info.compute.kernels.items():
        assert f"kernels, {phase}: {kernel}" in said
    assert "warm-up answered in" in said


MEASURED = next(iter(ANSWER_ONLY_S))  # a (class, quantization) the docs state a time for


@pytest.mark.parametrize(("seconds", "loud"), [(1.0, False), (20.0, False), (4000.0, True)])
def test_a_warm_up_far_beyond_the_classes_time_is_said_loudly(caplog, seconds, loud):
    cpu_class, quantization = MEASURED
    engine = engine_on(dataclasses.replace(AVX2, cpu_class=cpu_class), parameters=4_300_000_000,
                       quantization=quantization)
    with caplog.at_level(logging.WARNING):
        judge_warmup(engine, seconds, cpus=2)
    assert ("The warm-up took" in caplog.text) == loud
    if loud:
        assert f"CPU class {cpu_class}" in caplog.text and "=" * 72 in caplog.text


def test_the_expected_time_scales_with_the_model_and_the_cpus(caplog):
    """The demo model (0.3 M parameters) warms up in a blink; a full-size model on twice the
    CPUs is expected in half the time."""
    cpu_class, quantization = MEASURED
    tiny = engine_on(dataclasses.replace(AVX2, cpu_class=cpu_class), parameters=300_000, quantization=quantization)
    with caplog.at_level(logging.WARNING):
        judge_warmup(tiny, 9.0, cpus=2)
    assert not caplog.text
    full = engine_on(dataclasses.replace(AVX2, cpu_class=cpu_class), parameters=4_300_000_000, quantization=quantization)
    expected = ANSWER_ONLY_S[MEASURED]
    with caplog.at_level(logging.WARNING):
        judge_warmup(full, 3 * expected / 2 + 11, cpus=4)  # past 3x the 4-CPU time, under 3x the 2-CPU time
    assert "The warm-up took" in caplog.text


def test_a_class_without_a_measured_time_is_not_judged_and_says_so(caplog):
    engine = engine_on(dataclasses.replace(AVX2, cpu_class="baseline"), parameters=4_300_000_000)
    with caplog.at_level(logging.WARNING):
        judge_warmup(engine, 99999.0, cpus=2)
    assert "no measured time for CPU class baseline" in caplog.text


def test_an_engine_that_computes_nothing_is_not_judged(caplog):
    with caplog.at_level(logging.WARNING):
        judge_warmup(engine_on(None, parameters=4_300_000_000), 99999.0, cpus=2)
    assert not caplog.text


@pytest.mark.parametrize("cpu_class", [c for c in CLASSES if c != "baseline"])
def test_every_class_cloud_run_may_hand_out_has_a_measured_int8_time(cpu_class):
    """The default (QUANTIZATION=int8) is judged on every x86 class a Cloud Run instance can get:
    each has a row in the benchmark (docs/performance.md) and in the table the warm-up reads."""
    assert (cpu_class, "int8") in ANSWER_ONLY_S
    assert expected_answer_only_s(cpu_class, "int8", 4_300_000_000, 2) == ANSWER_ONLY_S[(cpu_class, "int8")]

"""Start-up: a bad model directory or bad setting fails fast and says how to fix it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from healer.model.model_dir import ModelDirError, check_model_dir
from healer.settings import Settings
from healer.api.app import create_app

ROOT = Path(__file__).resolve().parent.parent


def test_a_missing_model_directory_stops_start_up_with_the_fix(tmp_path):
    app = create_app(Settings(model_dir=tmp_path / "nowhere"))
    with pytest.raises(ModelDirError, match="does not exist") as error:
        with TestClient(app):
            pass
    assert "download.py --demo" in str(error.value) and "HF_TOKEN" in str(error.value)


def test_an_incomplete_model_directory_names_what_is_missing(tmp_path, demo_model_dir):
    (tmp_path / "config.json").write_text((demo_model_dir / "config.json").read_text())
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"")
    with pytest.raises(ModelDirError) as error:
        check_model_dir(tmp_path)
    message = str(error.value)
    assert "model-00002-of-00002.safetensors" in message and "model-00001" not in message
    assert "tokenizer.json" in message and "processor_config.json" in message


def test_the_demo_model_directory_is_complete(demo_model_dir):
    check_model_dir(demo_model_dir)
    # Gemma 3's real vocabulary is most of it: 262,208 embedding and output rows (67 MB in bf16)
    # and its 33 MB tokenizer.json; the layers are 0.3 M parameters.
    assert sum(f.stat().st_size for f in demo_model_dir.iterdir()) < 128 * 1024 * 1024


def test_the_server_process_exits_non_zero_with_one_clear_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "main.py"], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "MODEL_DIR": str(tmp_path / "nowhere"), "PORT": "18089"},
    )
    assert result.returncode == 2
    [line] = [ln for ln in result.stderr.splitlines() if "cannot start" in ln]
    assert "does not exist" in line and "download.py --demo" in line
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [("cors_origins", "*", "explicitly"), ("quantization", "fp16", "int8"),
     ("max_new_tokens", "1024", "256"), ("device", "tpu", "cuda"),
     ("slide_runner", "cloud-run-job", "SLIDE_STORE=gs://")],
)
def test_bad_settings_fail_at_start_up(monkeypatch, variable, value, complaint):
    monkeypatch.setenv(variable.upper(), value)
    with pytest.raises(ValidationError, match=complaint):
        Settings()


def test_a_cloud_run_job_runner_needs_the_jobs_full_name(monkeypatch):
    monkeypatch.setenv("SLIDE_RUNNER", "cloud-run-job")
    monkeypatch.setenv("SLIDE_STORE", "gs://bucket/slides")
    with pytest.raises(ValidationError, match="projects/PROJECT/locations/REGION/jobs/NAME"):
        Settings()
    monkeypatch.setenv("SLIDE_CLOUD_RUN_JOB", "projects/p/locations/europe-west1/jobs/healer-slides")
    assert Settings().slide_cloud_run_job.endswith("/jobs/healer-slides")


@pytest.mark.parametrize("variable", ["ADAPTER_DIR", "SLIDE_STORE", "MODEL_REVISION"])
def test_an_empty_variable_means_unset_not_the_current_directory(monkeypatch, variable):
    monkeypatch.setenv(variable, "")
    assert getattr(Settings(), variable.lower()) is None


def test_cors_origins_are_a_comma_separated_list(monkeypatch):
    monkeypatch.setenv("CORS_ORIGINS", "https://lab.example.org, http://localhost:5173")
    assert Settings().cors_origins == ["https://lab.example.org", "http://localhost:5173"]


ENDLESS_WARMUP = """
import runpy, sys, time, torch
from healer.model.medgemma import MedGemmaEngine

def endless(self):  # what an hours-long warm-up looks like from outside: torch busy on every core
    print("warm-up started", file=sys.stderr, flush=True)
    a = torch.randn(1024, 1024)
    while True:
        a = torch.tanh(a @ a)

MedGemmaEngine.warmup = endless
runpy.run_path("main.py", run_name="__main__")
"""


def test_sigterm_during_the_warm_up_stops_the_server_at_once(demo_model_dir, tmp_path):
    """Cloud Run sends SIGKILL 10 s after SIGTERM: start-up must not finish a warm-up first."""
    log = tmp_path / "server.log"
    env = {**os.environ, "MODEL_DIR": str(demo_model_dir), "PORT": "18091", "QUANTIZATION": "none"}
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-c", ENDLESS_WARMUP], cwd=ROOT, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    assert_sigterm_stops_it(process, lambda: "warm-up started" in log.read_text(), log, within_s=120, settle_s=1)


def assert_sigterm_stops_it(process: subprocess.Popen, started, log: Path, within_s: float, settle_s: float) -> None:
    """Once `started()` (and `settle_s` more), SIGTERM ends the server within 5 s, saying so."""
    try:
        deadline = time.monotonic() + within_s
        while not started():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        time.sleep(settle_s)
        stopped_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        took = time.monotonic() - stopped_at
    finally:
        process.kill()
    assert took < 5, f"exited {took:.1f} s after SIGTERM"
    assert "stopped during start-up" in log.read_text()

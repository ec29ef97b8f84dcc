"""Fine-tuning: `python -m healer.finetune` teaches the demo model a task it is at chance on, and
the service started with that ADAPTER_DIR answers as the evaluation command reports.

The task (tests/finetune_tiles.py): real H&E tiles of two sources of similar brightness; held-out
tiles come from other regions of each image than the training tiles.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from healer import evaluate, finetune
from healer.api.app import create_app
from healer.model.adapter import CARD_FILE, WEIGHTS_FILE, AdapterError, check_adapter
from healer.model.model_dir import read_source
from tests.conftest import demo_settings
from tests.finetune_tiles import build_task

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["--positive", "TUM", "--negative", "NORM"]
# A tiny model learns in few steps only with a large learning rate; the defaults suit MedGemma.
QUICK = ["--epochs", "6", "--patience", "6", "--learning-rate", "5e-3", "--validation-fraction", "0.25",
         "--no-progress"]


def _auc(folder, out, *extra) -> dict:
    assert evaluate.main([str(folder), *CLASSES, "--bootstrap", "0", "--out", str(out), "--no-progress", *extra]) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return build_task(tmp_path_factory.mktemp("task"), per_class=12, held_out_per_class=12)


@pytest.fixture(scope="module")
def adapter(task, demo_model_dir, tmp_path_factory):
    train, _ = task
    out = tmp_path_factory.mktemp("adapter")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MODEL_DIR", str(demo_model_dir))
        env.setenv("QUANTIZATION", "none")
        env.setenv("DEVICE", "cpu")
        assert finetune.main([str(train), "--out", str(out), *CLASSES, *QUICK]) == 0
    return out


@pytest.fixture
def demo_env(monkeypatch, demo_model_dir):
    monkeypatch.setenv("MODEL_DIR", str(demo_model_dir))
    monkeypatch.setenv("QUANTIZATION", "none")
    monkeypatch.setenv("DEVICE", "cpu")


def test_fine_tuning_lifts_held_out_roc_auc_from_chance_to_at_least_0_9(task, adapter, demo_env, tmp_path, capsys):
    _, held_out = task
    before = _auc(held_out, tmp_path / "before")["metrics"]["roc_auc"]["value"]
    after = _auc(held_out, tmp_path / "after", "--adapter", str(adapter), "--compare-base")
    printed = capsys.readouterr().out
    assert 0.35 <= before <= 0.65, f"the base demo model should be near chance here, got {before:.3f}"
    assert after["metrics"]["roc_auc"]["value"] >= 0.9, (before, after["metrics"]["roc_auc"]["value"])
    assert after["model"]["adapter"]["name"] == adapter.name
    assert "| base model |" in printed and f"| with adapter {adapter.name} |" in printed


def test_fine_tuning_trains_on_a_cpu_without_bf16_hardware(task, demo_env, monkeypatch, tmp_path):
    """On AVX2 the served kernels compute in fp32 without gradients: training gets plain modules."""
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    train, _ = task
    one_epoch = ["--epochs", "1", "--patience", "1", "--learning-rate", "5e-3", "--validation-fraction", "0.25",
                 "--no-progress"]
    assert finetune.main([str(train), "--out", str(tmp_path), *CLASSES, *one_epoch]) == 0
    assert (tmp_path / WEIGHTS_FILE).is_file()


def test_the_adapter_folder_holds_peft_weights_a_card_and_the_validation_roc(adapter, demo_model_dir):
    card = json.loads((adapter / CARD_FILE).read_text())
    assert (adapter / WEIGHTS_FILE).is_file() and (adapter / "adapter_config.json").is_file()
    assert (adapter / "roc.png").read_bytes()[:4] == b"\x89PNG"
    assert card["base"] == {"id": "healer/tiny-random-gemma3", "revision": None, "demo": True}
    assert card["data"]["train"] == {"NORM": 9, "TUM": 9} and card["data"]["validation"] == {"NORM": 3, "TUM": 3}
    assert "by tile" in card["data"]["split"]
    validation = card["validation"]
    assert {"roc_auc", "sensitivity", "specificity", "threshold"} <= validation.keys()
    assert validation["sensitivity"] >= validation["target_sensitivity"]
    assert card["settings"]["seed"] == 0 and card["settings"]["learning_rate"] == 5e-3
    assert len(card["training"]["validation_loss"]) == card["training"]["epochs_run"]


@pytest.mark.parametrize("quantization", ["none", "int8"])
def test_the_service_answers_a_held_out_tile_with_the_probability_evaluate_reports(
    task, adapter, demo_model_dir, tmp_path, monkeypatch, quantization,
):
    _, held_out = task
    monkeypatch.setenv("MODEL_DIR", str(demo_model_dir))
    monkeypatch.setenv("QUANTIZATION", quantization)
    monkeypatch.setenv("DEVICE", "cpu")
    monkeypatch.setenv("ADAPTER_DIR", str(adapter))
    report = _auc(held_out, tmp_path, "--batch-size", "1")
    row = next(line.split(",") for line in (tmp_path / "results.csv").read_text().splitlines()[1:])
    tile, reported = held_out / row[0], float(row[3])

    settings = demo_settings(demo_model_dir, quantization=quantization, adapter_dir=adapter)
    with TestClient(create_app(settings)) as client:
        health = client.get("/").json()
        answer = client.post("/predict", files={"image_file": ("tile.png", tile.read_bytes(), "image/png")},
                             data={"explain": "false"}).json()
        metrics = client.get("/metrics").text
    card = json.loads((adapter / CARD_FILE).read_text())
    assert answer["probability"] == pytest.approx(reported, abs=1e-6)
    assert answer["threshold"] == card["validation"]["threshold"]  # THRESHOLD unset: the card's
    assert health["model"]["adapter"] == answer["model"]["adapter"]
    assert health["model"]["adapter"]["name"] == adapter.name
    assert health["model"]["adapter"]["sha256"] == report["model"]["adapter"]["sha256"]
    assert f'healer_adapter_info{{base_revision="",name="{adapter.name}"' in metrics


def test_an_adapter_merged_in_memory_answers_in_8_bit_as_merged_weights_read_from_disk_do(
    task, adapter, demo_model_dir, tmp_path,
):
    """The 8-bit mode quantizes the merged model in memory; transformers' loader, reading the
    same merged weights from a checkpoint, must build the same int8 model (skips, threshold)."""
    import torch
    from transformers import AutoModelForImageTextToText, BitsAndBytesConfig

    from healer.model.adapter import load_merged, merged_into
    from healer.model.engine import Query
    from healer.model.medgemma import INT8_SKIP_MODULES, MedGemmaEngine
    from healer.screening.images import decode_image

    _, held_out = task
    tiles = sorted((held_out / "TUM").iterdir())[:2] + sorted((held_out / "NORM").iterdir())[:2]
    queries = [Query(decode_image(path.read_bytes(), 10**8), "Is there cancer?", explain=False) for path in tiles]
    int8 = {"dtype": torch.bfloat16, "device_map": "cpu",
            "quantization_config": BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=INT8_SKIP_MODULES)}
    merged = merged_into(AutoModelForImageTextToText.from_pretrained(demo_model_dir, dtype=torch.bfloat16), adapter)
    merged.save_pretrained(tmp_path / "merged")
    from_disk = AutoModelForImageTextToText.from_pretrained(tmp_path / "merged", **int8).eval()
    in_memory = load_merged(AutoModelForImageTextToText, demo_model_dir, int8, adapter).eval()

    engine = MedGemmaEngine.load(demo_settings(demo_model_dir))
    answers = [[g.p_yes for g in MedGemmaEngine(model, engine.processor, engine.info, 8).generate(queries)]
               for model in (from_disk, in_memory)]
    assert answers[0] == pytest.approx(answers[1], abs=1e-6)
    int8_layers = [[name for name, m in model.named_modules() if type(m).__name__ == "Linear8bitLt"]
                   for model in (from_disk, in_memory)]
    assert int8_layers[0] == int8_layers[1] and int8_layers[0]


def test_threshold_set_in_the_environment_wins_over_the_adapter_card(adapter, demo_model_dir):
    settings = demo_settings(demo_model_dir, adapter_dir=adapter, threshold=0.42)
    with TestClient(create_app(settings)) as client:
        answer = client.post("/predict", files={"image_file": ("t.png", _png(), "image/png")},
                             data={"explain": "false"})
    assert answer.json()["threshold"] == 0.42


def _png() -> bytes:
    from PIL import Image

    from tests.conftest import png_bytes

    return png_bytes(Image.new("RGB", (32, 32), (200, 120, 180)))


def _server(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "main.py"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PORT": "18091", **env})


def test_an_adapter_made_for_another_base_model_stops_start_up_with_one_line(adapter, demo_model_dir, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    for path in adapter.iterdir():
        (foreign / path.name).write_bytes(path.read_bytes())
    card = json.loads((foreign / CARD_FILE).read_text())
    card["base"] = {"id": "google/medgemma-4b-it", "revision": "abc123"}
    (foreign / CARD_FILE).write_text(json.dumps(card))
    result = _server({"MODEL_DIR": str(demo_model_dir), "ADAPTER_DIR": str(foreign)})
    assert result.returncode == 2
    [line] = [ln for ln in result.stderr.splitlines() if "cannot start" in ln]
    assert "made for google/medgemma-4b-it" in line and "healer/tiny-random-gemma3" in line
    assert "Traceback" not in result.stderr


def test_a_corrupt_adapter_stops_start_up_with_one_line(adapter, demo_model_dir, tmp_path):
    broken = shutil.copytree(adapter, tmp_path / "broken")
    weights = (broken / WEIGHTS_FILE).read_bytes()
    (broken / WEIGHTS_FILE).write_bytes(weights[: len(weights) // 2])  # a copy cut short
    result = _server({"MODEL_DIR": str(demo_model_dir), "ADAPTER_DIR": str(broken)})
    assert result.returncode == 2
    [line] = [ln for ln in result.stderr.splitlines() if "cannot start" in ln]
    assert "is corrupt" in line and WEIGHTS_FILE in line
    assert "Traceback" not in result.stderr


def test_a_card_that_is_not_json_is_named_corrupt(adapter, demo_model_dir, tmp_path):
    broken = shutil.copytree(adapter, tmp_path / "broken")
    (broken / CARD_FILE).write_text("{ not json")
    with pytest.raises(AdapterError, match=f"corrupt: {CARD_FILE}"):
        check_adapter(broken, read_source(demo_model_dir, "x", None))


def test_a_folder_with_one_class_stops_the_command_with_one_line(tmp_path, demo_env, capsys, task):
    train, _ = task
    only = tmp_path / "one-class"
    (only / "TUM").mkdir(parents=True)
    for path in (train / "TUM").iterdir():
        (only / "TUM" / path.name).write_bytes(path.read_bytes())
    assert finetune.main([str(only), "--out", str(tmp_path / "out"), "--no-progress"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("finetune: error:") and "no negative class" in line
    assert not (tmp_path / "out").exists()


def test_too_few_tiles_to_split_stops_the_command_with_one_line(tmp_path, demo_env, capsys, task):
    train, _ = task
    small = tmp_path / "small"
    for cls, keep in (("TUM", 3), ("NORM", 5)):
        (small / cls).mkdir(parents=True)
        for path in sorted((train / cls).iterdir())[:keep]:
            (small / cls / path.name).write_bytes(path.read_bytes())
    assert finetune.main([str(small), "--out", str(tmp_path / "out"), *CLASSES, "--no-progress"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("finetune: error: too few tiles to split: 3 positive")

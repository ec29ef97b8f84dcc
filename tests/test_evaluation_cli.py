"""`python -m healer.evaluate` end to end: real H&E crops, the real engine on the demo model.

The demo model's numbers are meaningless; these tests check the pipeline and its outputs (the CSV,
the printed metrics and THRESHOLD line, metrics.json, the ROC picture) and that they agree with
each other and with healer.evaluation.metrics recomputed from the CSV.
"""

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from evaluation_tiles import COUNTS
from healer.evaluation import metrics as roc
from healer.evaluate import main, service_threshold
from healer.settings import Settings
from healer.model.medgemma import MedGemmaEngine
from healer.evaluation.plot import POINT, to_pixel

ROOT = Path(__file__).resolve().parents[1]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as file:
        return list(csv.DictReader(file))


def test_end_to_end_on_real_tiles_writes_csv_metrics_and_roc(tiles, demo_env, tmp_path, capsys):
    out = tmp_path / "out"
    status = main([str(tiles), "--ignore", "BACK", "--batch-size", "4", "--bootstrap", "200",
                   "--out", str(out), "--no-progress"])
    printed = capsys.readouterr()
    assert status == 0, printed.err

    rows = read_csv(out / "results.csv")
    assert list(rows[0]) == ["path", "class", "label", "probability", "answer_mass", "answer"]
    assert sorted((r["class"], r["label"]) for r in rows) == sorted(
        [("TUM", "1")] * COUNTS["TUM"] + [("NORM", "0")] * COUNTS["NORM"] + [("STR", "0")] * COUNTS["STR"]
    )
    assert all((tiles / r["path"]).is_file() and r["path"].startswith(r["class"] + "/") for r in rows)
    assert all(0 <= float(r["probability"]) <= 1 for r in rows)
    assert {r["answer"] for r in rows} <= {"yes", "no", "uncertain"}
    assert all(0 <= float(r["answer_mass"]) <= 1 for r in rows)
    assert len({r["probability"] for r in rows}) > 1  # the image reaches the model

    labels = [int(r["label"]) for r in rows]
    scores = [float(r["probability"]) for r in rows]
    threshold_line = re.search(r"^THRESHOLD=(\d\.\d{4})$", printed.out, re.M)
    assert threshold_line, printed.out
    threshold = float(threshold_line.group(1))
    chosen = roc.threshold_for_sensitivity(labels, scores, 0.95)
    assert chosen - 1e-4 < threshold <= chosen
    assert roc.confusion(labels, scores, threshold).sensitivity >= 0.95

    report = json.loads((out / "metrics.json").read_text())
    assert report["threshold"] == threshold
    assert report["skipped_classes"] == {"BACK": COUNTS["BACK"]}
    assert report["model"]["demo"] is True
    assert report["metrics"]["roc_auc"]["value"] == pytest.approx(roc.roc_auc(labels, scores))
    at_threshold = roc.confusion(labels, scores, threshold)
    assert report["metrics"]["specificity"]["value"] == at_threshold.specificity
    assert report["confusion"] == vars(at_threshold)
    for name in ("sensitivity", "specificity", "balanced accuracy", "roc auc"):
        estimate = report["metrics"][name.replace(" ", "_")]
        assert estimate["low"] <= estimate["value"] <= estimate["high"]
        assert f"| {name} | {estimate['value']:.3f} | {estimate['low']:.3f} – {estimate['high']:.3f} |" in printed.out
    assert f"specificity {at_threshold.specificity:.3f}" in printed.out
    assert "skipped classes: BACK (2)" in printed.out
    assert "OPTIMISTIC: the threshold was chosen and reported on the same tiles" in printed.out
    assert report["optimistic"] is True
    # Each row's answer is /predict's at the printed threshold: a no needs P(yes) <= it.
    for r in rows:
        if r["answer"] == "no":
            assert float(r["probability"]) <= threshold
        if r["answer"] == "yes":
            assert float(r["probability"]) >= threshold
        if float(r["answer_mass"]) < 0.5:
            assert r["answer"] == "uncertain"

    assert "DEMO MODEL" in printed.err and "meaningless" in printed.err

    png = (out / "roc.png").read_bytes()
    assert len(png) < 200_000
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (640, 640)
    x, y = to_pixel(1 - at_threshold.specificity, at_threshold.sensitivity)
    assert image.convert("RGB").getpixel((round(x), round(y))) == POINT  # the operating point


def test_the_same_rows_come_out_in_any_batch_size_and_match_a_single_answer(tiles, demo_env, tmp_path,
                                                                            demo_model_dir, monkeypatch):
    batch_sizes = []
    real_generate = MedGemmaEngine.generate

    def recording(self, queries):
        batch_sizes.append(len(queries))
        assert not any(q.explain for q in queries)  # answer-only: one forward pass
        return real_generate(self, queries)

    monkeypatch.setattr(MedGemmaEngine, "generate", recording)
    assert main([str(tiles), "--negative", "NORM", "--batch-size", "3", "--bootstrap", "0",
                 "--out", str(tmp_path / "by3"), "--no-progress"]) == 0
    assert batch_sizes == [3, 3, 3, 1]  # 6 TUM + 4 NORM; STR and BACK skipped
    batch_sizes.clear()
    assert main([str(tiles), "--negative", "NORM", "--batch-size", "1", "--bootstrap", "0",
                 "--out", str(tmp_path / "by1"), "--no-progress"]) == 0
    assert batch_sizes == [1] * 10

    by3, by1 = read_csv(tmp_path / "by3" / "results.csv"), read_csv(tmp_path / "by1" / "results.csv")
    assert [r["path"] for r in by3] == [r["path"] for r in by1]
    for a, b in zip(by3, by1):  # left padding keeps batched rows equal to solo ones (bf16 noise)
        assert float(a["probability"]) == pytest.approx(float(b["probability"]), abs=5e-3)


def test_a_fixed_threshold_is_reported_as_given(tiles, demo_env, tmp_path, capsys):
    assert main([str(tiles), "--ignore", "BACK", "--threshold", "0.5", "--bootstrap", "50",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^THRESHOLD=0\.5000$", printed, re.M)
    assert "OPTIMISTIC" not in printed
    rows = read_csv(tmp_path / "results.csv")
    counts = roc.confusion([int(r["label"]) for r in rows], [float(r["probability"]) for r in rows], 0.5)
    assert f"TP {counts.tp}  FN {counts.fn}  TN {counts.tn}  FP {counts.fp}" in printed


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "healer.evaluate", *args], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, **env}, timeout=120,
    )


def assert_clean_failure(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("evaluate: error:")]
    assert len(errors) == 1 and re.search(message, errors[0]), result.stderr
    assert "THRESHOLD=" not in result.stdout


def test_an_empty_folder_fails_with_one_clear_line(tmp_path):
    assert_clean_failure(run_cli(str(tmp_path)), "no class sub-folders with images")


def test_a_missing_folder_fails_with_one_clear_line(tmp_path):
    assert_clean_failure(run_cli(str(tmp_path / "nowhere")), "is not a folder")


def test_an_unknown_positive_class_fails_with_one_clear_line(tiles):
    assert_clean_failure(run_cli(str(tiles), "--positive", "ADENO"), r"no images for class\(es\) ADENO")


def test_a_missing_model_fails_with_one_clear_line(tiles, tmp_path):
    result = run_cli(str(tiles), "--out", str(tmp_path / "out"), MODEL_DIR=str(tmp_path / "no-model"))
    assert_clean_failure(result, "Model directory .*no-model does not exist")
    assert not (tmp_path / "out").exists()


def test_a_bad_setting_fails_with_one_clear_line(tiles):
    assert_clean_failure(run_cli(str(tiles), QUANTIZATION="fp16"), "bad setting: QUANTIZATION")


@pytest.mark.parametrize("option", [["--target-sensitivity", "1.5"], ["--bootstrap", "-1"],
                                    ["--batch-size", "0"], ["--threshold", "0.5", "--target-sensitivity", "0.9"],
                                    ["--threshold", "0"], ["--threshold", "1"],
                                    ["--threshold", "0.5", "--calibrate", "."]])
def test_bad_options_are_usage_errors(tiles, option):
    result = run_cli(str(tiles), *option)
    assert result.returncode == 2 and "usage:" in result.stderr and "Traceback" not in result.stderr


def test_calibrate_chooses_the_threshold_on_another_folder_and_reports_on_this_one(
        tiles, demo_env, tmp_path, capsys, monkeypatch):
    # The calibration folder: the same classes, other tiles (the TUM and NORM tiles mirrored).
    other = tmp_path / "calibration"
    for cls in ("TUM", "NORM"):
        (other / cls).mkdir(parents=True)
        for path in sorted((tiles / cls).iterdir()):
            Image.open(path).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(other / cls / (path.stem + ".png"))
    assert main([str(other), "--negative", "NORM", "--bootstrap", "0", "--out", str(tmp_path / "cal"),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main([str(tiles), "--negative", "NORM", "--calibrate", str(other), "--bootstrap", "0",
                 "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"chosen on {other}" in printed and "OPTIMISTIC" not in printed
    threshold = float(re.search(r"^THRESHOLD=(\S+)$", printed, re.M).group(1))
    chosen_alone = json.loads((tmp_path / "cal" / "metrics.json").read_text())["threshold"]
    assert threshold == chosen_alone  # chosen on the calibration tiles ...
    rows = read_csv(tmp_path / "out" / "results.csv")
    assert {r["path"].split("/")[0] for r in rows} == {"TUM", "NORM"} and len(rows) == 10  # ... reported here
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    counts = roc.confusion([int(r["label"]) for r in rows], [float(r["probability"]) for r in rows], threshold)
    assert report["confusion"] == vars(counts) and report["calibration_folder"] == str(other)


@pytest.mark.parametrize(
    ("chosen", "printed"),
    [(0.37129, 0.3712), (1.0, 0.9999), (0.99995, 0.9999), (3e-7, 3e-7), (0.0, 5e-324)],
)
def test_the_printed_threshold_is_always_one_the_service_accepts(chosen, printed):
    threshold = service_threshold(chosen)
    assert threshold == printed and threshold <= max(chosen, 5e-324)
    Settings(threshold=threshold)  # raises if the service would refuse it

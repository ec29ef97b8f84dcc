"""`python -m healer.evaluate … --triage` end to end: real H&E tiles, the real engine on the demo model.

The demo model's bands are meaningless; these tests check that what is printed, written and drawn
agrees with the bound recomputed from results.csv, that the service reads the file it writes, and
that a calibration set too small for the guarantee asked is refused before the model loads.
"""

import csv
import json
import re

from PIL import Image

from healer.evaluate import main
from healer.evaluation.triage import calibrate, shares
from healer.screening.triage import Triage
from healer.settings import Settings

# 6 positive and 7 negative tiles can guarantee only a little: 60 % at 50 % confidence.
SMALL_TARGETS = ["--target-sensitivity", "0.6", "--target-specificity", "0.6", "--confidence", "0.5"]


def evaluate_with_triage(tiles, out, *options) -> int:
    return main([str(tiles), "--ignore", "BACK", "--bootstrap", "0", "--out", str(out), "--no-progress",
                 "--triage", *options])


def test_triage_prints_writes_and_draws_the_bands_and_ends_with_the_two_settings(tiles, demo_env, tmp_path, capsys):
    out = tmp_path / "out"
    status = evaluate_with_triage(tiles, out, *SMALL_TARGETS)
    printed = capsys.readouterr()
    assert status == 0, printed.err

    with (out / "results.csv").open() as file:
        rows = list(csv.DictReader(file))
    labels = [int(r["label"]) for r in rows]
    scores = [float(r["probability"]) for r in rows]
    answered = [float(r["answer_mass"]) >= Settings().min_answer_mass for r in rows]
    expected = calibrate(labels, scores, 0.6, 0.6, 0.5).triage

    last = printed.out.rstrip().splitlines()[-2:]
    assert re.fullmatch(r"TRIAGE_RULE_OUT=[\d.e-]+", last[0]) and re.fullmatch(r"TRIAGE_RULE_IN=[\d.e-]+", last[1])
    printed_bands = Triage(float(last[0].split("=")[1]), float(last[1].split("=")[1]))
    assert printed_bands == expected
    assert "With 50% confidence, at most 40.0% of positive tiles are ruled out" in printed.out
    assert "assumptions: the new tiles are exchangeable with the calibration tiles" in printed.out
    assert "| rule-out |" in printed.out and "| refer |" in printed.out and "| rule-in |" in printed.out

    report = json.loads((out / "triage.json").read_text())
    assert (report["rule_out"], report["rule_in"]) == (expected.rule_out, expected.rule_in)
    assert report["calibration"]["positives"] == 6 and report["calibration"]["negatives"] == 7
    assert report["shares"] == shares(labels, scores, answered, expected)
    assert all(abs(sum(group.values()) - 1) < 1e-9 for group in report["shares"].values())
    with Image.open(out / "triage.png") as picture:
        assert picture.format == "PNG" and picture.width >= 600

    served = Settings(triage_file=out / "triage.json").triage
    assert served == expected  # the file is what the service takes


def test_too_few_positives_for_the_guarantee_is_refused_before_the_model_loads(tiles, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "no-model-here"))  # loading would fail: it never gets there
    status = evaluate_with_triage(tiles, tmp_path / "out", "--target-sensitivity", "0.98", "--confidence", "0.95")
    printed = capsys.readouterr()
    assert status == 1
    assert printed.err.strip().splitlines() == [
        f"evaluate: error: --triage on {tiles}: a sensitivity of at least 0.98 at 95% confidence needs at least "
        "149 positive calibration tiles; this set has 6"
    ]
    assert not (tmp_path / "out").exists()


def test_a_target_sensitivity_of_1_is_refused_as_impossible(tiles, tmp_path, capsys):
    assert evaluate_with_triage(tiles, tmp_path / "out", "--target-sensitivity", "1") == 1
    assert "cannot be guaranteed from any finite calibration set" in capsys.readouterr().err

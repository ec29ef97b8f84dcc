"""Triage bands as the service serves them: settings checked at start-up, a band on every answer,
slide tile and slide summary, and the whole lab path on real tiles: evaluate --triage, then serve
its triage.json and see each tile land in the band its P(yes) calls for."""

import csv
import json
import re

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import ValidationError

from healer.api.app import create_app
from healer.evaluate import main as evaluate
from healer.model.fake import FakeEngine
from healer.screening.triage import Triage
from healer.settings import Settings
from healer.slides import heatmap
from healer.slides.summary import summarise
from healer.slides.tiling import Tile
from tests.conftest import demo_settings
from tests.test_slides_api import finished, slide_client, upload
from tests.slide_files import cmu_svs


def predict(client, content: bytes):
    response = client.post("/predict", files={"image_file": ("tile.png", content, "image/png")})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(("environment", "message"), [
    ({"TRIAGE_RULE_OUT": "0.6", "TRIAGE_RULE_IN": "0.4"}, "TRIAGE_RULE_IN (0.4) is below TRIAGE_RULE_OUT (0.6)"),
    ({"TRIAGE_RULE_OUT": "0.2"}, "set both TRIAGE_RULE_OUT and TRIAGE_RULE_IN"),
    ({"TRIAGE_RULE_IN": "1.5", "TRIAGE_RULE_OUT": "0.2"}, "less than or equal to 1"),
    ({"TRIAGE_FILE": "/no/such/triage.json"}, "cannot read /no/such/triage.json"),
])
def test_bad_triage_settings_stop_the_start_with_a_clear_message(monkeypatch, environment, message):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=re.escape(message)):
        Settings()


def test_a_triage_file_and_explicit_thresholds_together_are_refused(tmp_path):
    path = tmp_path / "triage.json"
    path.write_text('{"rule_out": 0.1, "rule_in": 0.9}')
    assert Settings(triage_file=path).triage == Triage(0.1, 0.9)
    with pytest.raises(ValidationError, match="not both"):
        Settings(triage_file=path, triage_rule_out=0.1, triage_rule_in=0.9)
    path.write_text('{"threshold": 0.4}')
    with pytest.raises(ValidationError, match="is not the triage.json"):
        Settings(triage_file=path)


def test_empty_triage_variables_mean_no_triage(monkeypatch):
    monkeypatch.setenv("TRIAGE_RULE_OUT", "")
    monkeypatch.setenv("TRIAGE_RULE_IN", "")
    monkeypatch.setenv("TRIAGE_FILE", "")
    assert Settings().triage is None


def test_without_triage_thresholds_answers_carry_no_band(fake_client, he_tile_png):
    assert predict(fake_client, he_tile_png)["triage"] is None
    assert fake_client.get("/").json()["triage"] is None


@pytest.mark.parametrize(("p_yes", "answer_mass", "band"), [
    (0.93, 0.97, "rule-in"), (0.5, 0.97, "refer"), (0.2, 0.97, "refer"), (0.05, 0.97, "rule-out"),
    (0.05, 0.1, "refer"),  # the model did not answer: never ruled out
])
def test_every_answer_carries_its_band(fake_engine, tmp_path, he_tile_png, p_yes, answer_mass, band):
    fake_engine.p_yes, fake_engine.answer_mass = p_yes, answer_mass
    settings = Settings(model_dir=tmp_path, triage_rule_out=0.2, triage_rule_in=0.9)
    with TestClient(create_app(settings, engine=fake_engine)) as client:
        assert predict(client, he_tile_png)["triage"] == band
        assert client.get("/").json()["triage"] == {"rule_out": 0.2, "rule_in": 0.9}


def test_a_slide_takes_its_worst_tiles_band_and_counts_every_band():
    triage = Triage(0.2, 0.8)
    summary = summarise([0.1, 0.5, 0.9, 0.05], [1, 1, 1, 0.1], 0.5, 5, 0.5, triage)
    assert summary.triage == "rule-in"
    assert summary.tiles_per_band == {"rule-out": 1, "refer": 2, "rule-in": 1}  # the unanswered one is referred
    assert summarise([0.1, 0.5], [1, 1], 0.5, 5, 0.5, triage).triage == "refer"
    assert summarise([0.1, 0.15], [1, 1], 0.5, 5, 0.5, triage).triage == "rule-out"
    assert summarise([], [], 0.5, 5, 0.5, triage).triage == "refer"  # no tissue screened: nothing ruled out
    assert summarise([0.9], [1], 0.5, 5, 0.5).triage is None  # without thresholds, as before


def test_the_heatmap_outlines_rule_in_tiles_in_red_and_referred_ones_in_white():
    thumbnail = Image.new("RGB", (300, 100), "black")
    tiles = [Tile(0, 0, 500, 1.0), Tile(1000, 0, 500, 1.0), Tile(2000, 0, 500, 1.0)]
    tinted = heatmap.overlay(thumbnail, (3000, 1000), tiles, [0.1, 0.5, 0.9], 0.5,
                             bands=["rule-out", "refer", "rule-in"])
    pixels = np.asarray(tinted).astype(int)
    assert pixels[0, 25].tolist() != [255, 255, 255] and pixels[0, 25, 0] < 200  # rule-out: no outline
    assert pixels[0, 125].tolist() == [255, 255, 255]  # refer: white
    assert pixels[0, 225, 0] > 200 and pixels[0, 225, 1] < 50  # rule-in: red
    assert pixels[1, 225, 0] > 200  # two pixels wide
    framed = heatmap.with_legend(tinted, 0.5, "note", Triage(0.1, 0.9))
    assert framed.height == 100 + heatmap.LEGEND_HEIGHT


def test_from_labelled_tiles_to_served_bands(tiles, demo_env, demo_model_dir, tmp_path, capsys):
    """The lab's path: calibrate on its labelled tiles, serve the file, and each tile is banded by
    the thresholds the evaluation printed."""
    out = tmp_path / "evaluation"
    status = evaluate([str(tiles), "--ignore", "BACK", "--bootstrap", "0", "--out", str(out), "--no-progress",
                       "--triage", "--target-sensitivity", "0.6", "--target-specificity", "0.6", "--confidence", "0.5"])
    assert status == 0, capsys.readouterr().err
    last = capsys.readouterr().out.rstrip().splitlines()[-2:]
    printed = Triage(*(float(line.split("=")[1]) for line in last))
    with (out / "results.csv").open() as file:
        rows = list(csv.DictReader(file))

    # MIN_ANSWER_MASS=0: the demo model barely answers, and every unanswered tile would be referred.
    settings = demo_settings(demo_model_dir, triage_file=out / "triage.json", min_answer_mass=0)
    with TestClient(create_app(settings)) as client:
        assert client.get("/").json()["triage"] == {"rule_out": printed.rule_out, "rule_in": printed.rule_in}
        for row in rows:
            body = predict(client, (tiles / row["path"]).read_bytes())
            assert body["probability"] == pytest.approx(float(row["probability"]), abs=1e-6)
            assert body["triage"] == printed.band(body["probability"])


def test_a_slide_job_bands_every_tile_and_the_summary_says_how_many_fell_in_each(demo_model_dir, tmp_path):
    with slide_client(demo_model_dir, tmp_path, triage_rule_out=0.45, triage_rule_in=0.55, min_answer_mass=0) as client:
        done = finished(client, upload(client, cmu_svs()).json()["id"])
        assert done["status"] == "done", done["error"]
        tiles = client.get(done["tiles_url"]).json()
    triage = Triage(0.45, 0.55)
    assert tiles["triage"] == {"rule_out": 0.45, "rule_in": 0.55}
    bands = [tile["triage"] for tile in tiles["tiles"]]
    assert bands == [triage.band(tile["probability"]) for tile in tiles["tiles"]]
    summary = done["summary"]
    assert summary["tiles_per_band"] == {band: bands.count(band) for band in ("rule-out", "refer", "rule-in")}
    worst = "rule-in" if "rule-in" in bands else "refer" if "refer" in bands else "rule-out"
    assert summary["triage"] == worst
    assert summary["triage_thresholds"] == {"rule_out": 0.45, "rule_in": 0.55}


def test_a_triage_file_chosen_with_another_model_stops_the_start(tmp_path):
    """Its guarantee is about another model's scores: serving it would promise nothing."""
    calibrated = tmp_path / "triage.json"
    calibrated.write_text(json.dumps({"rule_out": 0.1, "rule_in": 0.9, "model": {"id": "other/medgemma", "adapter": None}}))
    settings = Settings(model_dir=tmp_path, triage_file=calibrated)
    with pytest.raises(ValueError, match="does not hold for this model: they were chosen with other/medgemma, "
                                         "and this service serves fake/engine"):
        with TestClient(create_app(settings, engine=FakeEngine())):
            pass
    calibrated.write_text(json.dumps({"rule_out": 0.1, "rule_in": 0.9, "model": {"id": "fake/engine", "adapter": None}}))
    with TestClient(create_app(Settings(model_dir=tmp_path, triage_file=calibrated), engine=FakeEngine())) as client:
        assert client.get("/").json()["triage"] == {"rule_out": 0.1, "rule_in": 0.9}

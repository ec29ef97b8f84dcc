"""POST /predict: the answer a user gets, through the real engine and the demo model."""

import logging

import pytest
from PIL import PngImagePlugin

from healer.screening.prompts import DEFAULT_QUESTION
from tests.conftest import png_bytes


def predict(client, content: bytes, name="tile.png", content_type="image/png", **form):
    return client.post("/predict", files={"image_file": (name, content, content_type)}, data=form)


def assert_agrees(body):
    """answer, probability and text tell one story (healer.screening.answers' rule)."""
    if body["answer"] == "yes":
        assert body["probability"] >= 0.5
    if body["answer"] == "no":
        assert body["probability"] <= 0.5


@pytest.mark.parametrize("image", ["he_tile_png", "ihc_png", "svs_region_png"])
def test_answers_a_real_tissue_image(client, image, request):
    response = predict(client, request.getfixturevalue(image))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"] in ("yes", "no", "uncertain")
    assert 0.0 <= body["probability"] <= 1.0
    assert_agrees(body)
    assert body["question"] == DEFAULT_QUESTION
    assert body["model"]["demo"] is True
    assert "not a diagnosis" in body["disclaimer"]
    assert {"decode_image", "preprocess", "model", "total"} <= set(body["timings_ms"])
    assert isinstance(body["explanation"], str) and body["prediction"]


def test_a_custom_question_is_asked_and_echoed(client, he_tile_png):
    body = predict(client, he_tile_png, question="  Is there high-grade dysplasia?  ").json()
    assert body["question"] == "Is there high-grade dysplasia?"


def test_a_blank_question_falls_back_to_the_default(client, he_tile_png):
    assert predict(client, he_tile_png, question="   ").json()["question"] == DEFAULT_QUESTION


def test_answer_only_mode_returns_no_explanation(client, he_tile_png):
    body = predict(client, he_tile_png, explain="false").json()
    assert body["explanation"] == ""
    assert body["prediction"] in ("Yes", "No", "Uncertain")
    assert_agrees(body)


def test_a_too_long_question_is_refused_with_422(client, he_tile_png):
    response = predict(client, he_tile_png, question="why? " * 200)
    assert response.status_code == 422
    assert response.json()["error"] == "question_too_long"


def test_missing_image_field_is_422_naming_the_field(client):
    response = client.post("/predict", data={"question": "Is it?"})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_request" and "image_file" in body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]


def test_the_response_schema_is_published_in_openapi(client):
    schema = client.get("/openapi.json").json()
    prediction = schema["components"]["schemas"]["Prediction"]
    assert prediction["properties"]["answer"]["enum"] == ["yes", "no", "uncertain"]
    responses = schema["paths"]["/predict"]["post"]["responses"]
    assert {"200", "400", "413", "415", "422", "503"} <= set(responses)


def test_image_content_never_reaches_the_logs(client, he_tile, caplog):
    marker = "PATIENT-NAME-DOE-JANE"
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", marker)
    with caplog.at_level(logging.DEBUG):
        response = predict(client, png_bytes(he_tile.resize((64, 64)), pnginfo=info), name=f"{marker}.png")
    assert response.status_code == 200
    assert marker not in caplog.text


def test_an_engine_failure_is_a_generic_500_with_a_request_id(fake_client, fake_engine, he_tile_png, caplog):
    def explode(queries):
        raise RuntimeError("CUDA error at /opt/secret/path/model.py line 42")

    fake_engine.generate = explode
    response = predict(fake_client, he_tile_png)
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal_error"
    assert "secret" not in response.text and "Traceback" not in response.text
    assert body["request_id"] == response.headers["x-request-id"]
    [logged] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert logged.request_id == body["request_id"] and logged.exc_info[0] is RuntimeError


def test_the_fake_engine_contract_matches_the_real_one(fake_client, he_tile_png):
    body = predict(fake_client, he_tile_png).json()
    assert (body["answer"], body["probability"]) == ("yes", 0.93)
    assert body["explanation"] == "Irregular glands with cribriform architecture invade the stroma."
    assert body["prediction"].startswith("Yes.")


def test_the_threshold_in_use_is_reported_and_applied(tmp_path, he_tile_png):
    from fastapi.testclient import TestClient

    from healer.model.fake import FakeEngine
    from healer.settings import Settings
    from healer.api.app import create_app

    engine = FakeEngine(text="No. Regular crypts.", p_yes=0.3, first_token_label="no")
    for threshold, answer in ((0.5, "no"), (0.2, "uncertain")):
        with TestClient(create_app(Settings(model_dir=tmp_path, threshold=threshold), engine=engine)) as client:
            body = predict(client, he_tile_png).json()
        assert (body["threshold"], body["answer"]) == (threshold, answer)

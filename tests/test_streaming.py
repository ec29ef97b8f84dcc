"""A streamed /predict (server-sent events): the answer as soon as it is final, the explanation as
it is written, then the same body the unstreamed call returns; every guarantee of the unstreamed
call (refusals before the stream, timeouts, disconnects, SIGTERM) still holds."""

import os
import signal
import sys
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from healer.api.app import create_app
from healer.model.engine import Listener, Query
from healer.model.fake import FakeEngine
from healer.model.medgemma import MedGemmaEngine
from healer.settings import Settings
from healer.text.prompts import DEFAULT_QUESTION
from healer.tools.live_server import live_server
from tests.conftest import demo_settings
from tests.sse import events

STREAM = {"Accept": "text/event-stream"}
# What a streamed answer may differ in from the same answer unstreamed: when it was computed.
UNTIMED = {"timings_ms", "cached"}


def streamed(client, image: bytes, **data) -> list[tuple[str, dict, float]]:
    with client.stream("POST", "/predict", files={"image_file": ("tile.png", image)}, data=data,
                       headers=STREAM) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(events(response.iter_lines()))


def without(body: dict, keys=UNTIMED) -> dict:
    return {k: v for k, v in body.items() if k not in keys}


def check_stream(received, plain: dict) -> None:
    """answer, then tokens, then done; done is the unstreamed body; answer agrees with it."""
    names = [name for name, _, _ in received]
    assert names[0] == "answer" and names[-1] == "done" and set(names[1:-1]) <= {"token"}, names
    answer, done = received[0][1], received[-1][1]
    assert without(done) == without(plain)
    assert answer == {k: done[k] for k in answer}
    assert set(answer) >= {"answer", "probability", "answer_mass", "threshold", "triage", "disclaimer"}


@pytest.fixture
def slow_client(tmp_path):
    engine = FakeEngine(delay_s=1.0)
    with TestClient(create_app(Settings(model_dir=tmp_path, cache_size=0), engine=engine)) as client:
        yield client, engine


def test_the_answer_comes_first_then_the_explanation_then_the_same_body_as_unstreamed(slow_client, he_tile_png):
    client, engine = slow_client
    received = streamed(client, he_tile_png)
    plain = client.post("/predict", files={"image_file": ("tile.png", he_tile_png)}).json()
    check_stream(received, plain)
    tokens = [data["text"] for name, data, _ in received if name == "token"]
    assert len(tokens) > 3 and "".join(tokens) == engine.text
    # The answer arrived while the explanation was still being written (1 s spread over its words).
    assert received[-1][2] - received[0][2] > 0.5


def test_stream_true_in_the_form_streams_too(fake_client, he_tile_png):
    with fake_client.stream("POST", "/predict", files={"image_file": ("t.png", he_tile_png)},
                            data={"stream": "true"}) as response:
        assert [name for name, _, _ in events(response.iter_lines())][-1] == "done"


def test_an_answer_only_stream_is_answer_then_done(fake_client, he_tile_png):
    received = streamed(fake_client, he_tile_png, explain="false")
    assert [name for name, _, _ in received] == ["answer", "done"]
    assert received[-1][1]["explanation"] == ""


def test_a_cached_answer_streams_at_once(fake_client, he_tile_png):
    fake_client.post("/predict", files={"image_file": ("t.png", he_tile_png)})
    received = streamed(fake_client, he_tile_png)
    assert [name for name, _, _ in received] == ["answer", "done"] and received[-1][1]["cached"] is True


@pytest.fixture(scope="module")
def uncached_demo_client(demo_model_dir):
    """The demo model with no cache: each answer, streamed or not, computed afresh."""
    with TestClient(create_app(demo_settings(demo_model_dir, cache_size=0))) as client:
        yield client


def test_the_demo_model_streams_the_answer_it_gives_unstreamed(uncached_demo_client, he_tile_png, ihc_png):
    """The real engine: P(yes) read at the answer step while generating equals the one read after."""
    client = uncached_demo_client
    for image in (he_tile_png, ihc_png):
        received = streamed(client, image)
        plain = client.post("/predict", files={"image_file": ("t.png", image)}).json()
        check_stream(received, plain)
        assert any(name == "token" for name, _, _ in received)


def test_refusals_come_before_the_stream_opens_as_json(tmp_path, he_tile_png):
    engine = FakeEngine(delay_s=2.0)
    settings = Settings(model_dir=tmp_path, cache_size=0, max_queue=1, max_batch_size=1)
    with TestClient(create_app(settings, engine=engine)) as client:
        bad = client.post("/predict", files={"image_file": ("t.png", b"not an image")}, headers=STREAM)
        assert bad.status_code == 415 and bad.json()["error"] == "unsupported_image"
        first = threading.Thread(target=lambda: streamed(client, he_tile_png))
        first.start()
        deadline = time.monotonic() + 10
        while not engine.running.is_set():  # the first is in the model: the queue's one place is free
            assert time.monotonic() < deadline
            time.sleep(0.01)
        second = threading.Thread(target=lambda: streamed(client, he_tile_png, question="Second?"))
        second.start()
        time.sleep(0.3)  # the second holds the queue's place now
        busy = client.post("/predict", files={"image_file": ("t.png", he_tile_png)}, headers=STREAM)
        assert busy.status_code == 503 and busy.json()["error"] == "busy" and "retry-after" in busy.headers
        first.join(10), second.join(10)


def test_a_timeout_mid_stream_is_an_error_event_with_the_usual_body(tmp_path, he_tile_png):
    settings = Settings(model_dir=tmp_path, cache_size=0, request_timeout_s=0.3)
    with TestClient(create_app(settings, engine=FakeEngine(delay_s=2.0))) as client:
        received = streamed(client, he_tile_png)
    name, body, _ = received[-1]
    assert name == "error" and body["error"] == "timeout" and set(body) == {"error", "detail", "request_id"}


class CancelAtAnswer(Listener):
    def __init__(self):
        self.texts = []

    def answered(self, reading):
        self.cancelled = True  # the client leaves as soon as it has its answer

    def wrote(self, text):
        self.texts.append(text)


def test_a_row_whose_listener_is_cancelled_leaves_the_batch_and_stops_generating(demo_model_dir, he_tile):
    engine = MedGemmaEngine.load(demo_settings(demo_model_dir))
    full = engine.generate([Query(he_tile.convert("RGB"), DEFAULT_QUESTION)])[0]
    left = CancelAtAnswer()
    early = engine.generate([Query(he_tile.convert("RGB"), DEFAULT_QUESTION, listener=left)])[0]
    assert early.answer_step == full.answer_step and early.p_yes == full.p_yes
    assert len(early.text) < len(full.text)  # it stopped: no explanation written for nobody


def test_a_client_that_leaves_while_queued_is_never_answered(tmp_path, he_tile_png):
    """A streamed request whose client disconnects while it waits leaves the queue: the model never
    sees it. Real server, real sockets."""
    env = {"FAKE_DELAY_S": "2", "MAX_BATCH_SIZE": "1", "CACHE_SIZE": "0", "MODEL_DIR": str(tmp_path),
           "HEALER_TEST_LOG": str(tmp_path), "LOG_LEVEL": "info"}
    with live_server(env, command=[sys.executable, "-m", "tests.slow_server"]) as (url, process):
        busy = threading.Thread(target=lambda: httpx.post(url + "/predict", files={"image_file": ("t.png", he_tile_png)},
                                                          data={"question": "First?"}, timeout=30))
        busy.start()
        time.sleep(0.5)
        with httpx.Client(timeout=30) as client:
            with client.stream("POST", url + "/predict", files={"image_file": ("t.png", he_tile_png)},
                               data={"question": "Left?"}, headers=STREAM) as response:
                assert response.status_code == 200
                time.sleep(0.5)  # queued behind the first: it leaves before its turn
        busy.join(30)
        time.sleep(1)  # had the second stayed queued, its batch would have run by now
        metrics = httpx.get(url + "/metrics").text
        batches = next(line for line in metrics.splitlines() if line.startswith("healer_batch_size_count"))
    assert float(batches.rsplit(" ", 1)[1]) == 1.0  # only the first was ever run


def test_sigterm_lets_a_streamed_answer_finish_then_exits_0(tmp_path, he_tile_png):
    env = {"FAKE_DELAY_S": "2", "SHUTDOWN_GRACE_S": "8", "MODEL_DIR": str(tmp_path), "HEALER_TEST_LOG": str(tmp_path)}
    with live_server(env, command=[sys.executable, "-m", "tests.slow_server"]) as (url, process):
        names = []

        def listen():
            with httpx.stream("POST", url + "/predict", files={"image_file": ("t.png", he_tile_png)},
                              headers=STREAM, timeout=30) as response:
                for name, _, _ in events(response.iter_lines()):
                    names.append(name)

        reader = threading.Thread(target=listen)
        reader.start()
        deadline = time.monotonic() + 10
        while "answer" not in names:
            assert time.monotonic() < deadline, "no answer event"
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGTERM)
        reader.join(30)
        assert process.wait(timeout=30) == 0
    assert names[-1] == "done"


def test_the_answer_waits_for_the_answer_word_to_be_settled(tmp_path, he_tile_png):
    """The answer step says yes, but the text goes on "Yesh": the text rule refuses it, and the
    streamed answer must not have said yes before it knew."""
    engine = FakeEngine(text="Yesh, the glands look odd.", delay_s=0.2)
    with TestClient(create_app(Settings(model_dir=tmp_path, cache_size=0), engine=engine)) as client:
        received = streamed(client, he_tile_png)
    assert received[0][0] == "answer" and received[0][1]["answer"] == "uncertain" == received[-1][1]["answer"]

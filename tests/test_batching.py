"""Micro-batching and backpressure: shared model calls, bounded waiting, nothing lost."""

import asyncio
import os
import threading
import time

import pytest
from fastapi.testclient import TestClient

from healer.screening.batching import Batcher
from healer.model.engine import Query
from healer.errors import Busy, NotReady, TimedOut
from healer.model.fake import FakeEngine
from healer.model.medgemma import MedGemmaEngine
from healer.settings import Settings
from healer.api.app import create_app
from healer.screening.images import decode_image
from tests.conftest import demo_settings
from tests.test_predict import predict


@pytest.fixture(scope="module")
def engine(demo_model_dir):
    return MedGemmaEngine.load(demo_settings(demo_model_dir))


def run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_requests_share_one_batch_and_keep_their_own_answers(engine, he_tile):
    tiles = [he_tile.crop((x, x, x + 400, x + 400)) for x in (0, 300, 600)]
    queries = [Query(tiles[0], "Is there adenocarcinoma?"), Query(tiles[1], "Any tumour?"),
               Query(tiles[2], "Is colorectal cancer present in this image? Answer yes or no.")]
    solo = [engine.generate([q])[0] for q in queries]
    sizes = []

    async def together():
        batcher = Batcher(engine, max_batch_size=4, max_wait_ms=500, on_batch=lambda n, s: sizes.append(n))
        results = await asyncio.gather(*(batcher.submit(q) for q in queries))
        await batcher.drain(grace_s=1)
        return results

    batched = run(together())
    assert sizes == [3]
    for alone, shared in zip(solo, batched):
        assert shared.p_yes == pytest.approx(alone.p_yes, abs=5e-3)
        assert shared.answer_label == alone.answer_label


def test_requests_still_decoding_their_image_join_the_batch_instead_of_waiting_for_the_next(he_tile):
    engine, sizes = FakeEngine(), []

    async def scenario():
        batcher = Batcher(engine, max_batch_size=4, max_wait_ms=10, max_prepare_wait_s=5,
                          on_batch=lambda n, s: sizes.append(n))

        async def decoding_first(seconds):
            async with batcher.place():
                await asyncio.sleep(seconds)  # its image is being decoded, well past max_wait_ms
                return await batcher.submit(Query(he_tile, "q"), placed=True)

        await asyncio.gather(batcher.submit(Query(he_tile, "q")), *(decoding_first(0.1 * i) for i in (1, 2, 3)))
        await batcher.drain(grace_s=1)

    run(scenario())
    assert sizes == [4]


def test_a_request_that_fails_to_decode_does_not_hold_the_batch_back(he_tile):
    engine = FakeEngine()

    async def scenario():
        batcher = Batcher(engine, max_batch_size=4, max_wait_ms=10, max_prepare_wait_s=10)

        async def undecodable():
            with pytest.raises(ValueError):
                async with batcher.place():
                    await asyncio.sleep(0.05)
                    raise ValueError("not an image")

        started = time.monotonic()
        await asyncio.gather(batcher.submit(Query(he_tile, "q")), undecodable())
        await batcher.drain(grace_s=1)
        return time.monotonic() - started

    assert run(scenario()) < 5  # not the 10 s it would wait for a request still decoding


def test_answer_only_and_explained_requests_are_not_mixed(he_tile):
    engine, sizes = FakeEngine(), []

    async def scenario():
        batcher = Batcher(engine, max_batch_size=8, max_wait_ms=200, on_batch=lambda n, s: sizes.append(n))
        await asyncio.gather(*(batcher.submit(Query(he_tile, "q", explain=i % 2 == 0)) for i in range(4)))
        await batcher.drain(grace_s=1)

    run(scenario())
    assert sorted(sizes) == [2, 2]


def test_a_full_queue_refuses_at_once_and_every_accepted_request_completes(he_tile):
    engine = FakeEngine(delay_s=0.3)

    async def scenario():
        batcher = Batcher(engine, max_batch_size=1, max_wait_ms=0, max_queue=2)
        accepted = [asyncio.create_task(batcher.submit(Query(he_tile, "q0")))]
        await asyncio.sleep(0.05)  # q0 is running
        accepted += [asyncio.create_task(batcher.submit(Query(he_tile, f"q{i}"))) for i in (1, 2)]
        await asyncio.sleep(0.05)  # q1 and q2 wait: the queue is full
        with pytest.raises(Busy) as refused:
            await batcher.submit(Query(he_tile, "one too many"))
        results = await asyncio.gather(*accepted)
        await batcher.drain(grace_s=1)
        return refused.value, results

    refused, results = run(scenario())
    assert refused.retry_after_s >= 1 and refused.headers == {"Retry-After": str(refused.retry_after_s)}
    assert len(results) == 3
    assert engine.questions == ["q0", "q1", "q2"]


def test_a_request_that_waits_too_long_times_out_and_frees_its_place(he_tile):
    engine = FakeEngine(delay_s=0.5)

    async def scenario():
        batcher = Batcher(engine, max_batch_size=1, max_wait_ms=0, max_queue=1)
        first = asyncio.create_task(batcher.submit(Query(he_tile, "first")))
        await asyncio.sleep(0.05)
        with pytest.raises(TimedOut):
            await batcher.submit(Query(he_tile, "impatient"), timeout_s=0.1)
        assert batcher.depth == 1  # only the running one: the queue slot is free again
        await batcher.submit(Query(he_tile, "next"))  # would be Busy if the place were not freed
        await first
        await batcher.drain(grace_s=1)

    run(scenario())
    assert engine.questions == ["first", "next"]


def test_draining_finishes_accepted_work_and_refuses_new_work(he_tile):
    engine = FakeEngine(delay_s=0.2)

    async def scenario():
        batcher = Batcher(engine, max_batch_size=2, max_wait_ms=0)
        accepted = [asyncio.create_task(batcher.submit(Query(he_tile, f"q{i}"))) for i in range(3)]
        await asyncio.sleep(0.01)
        await batcher.drain(grace_s=5)
        assert all(task.done() and not task.exception() for task in accepted)
        with pytest.raises(NotReady):
            await batcher.submit(Query(he_tile, "late"))

    run(scenario())
    assert len(engine.questions) == 3


@pytest.mark.parametrize("bad", [{"max_batch_size": 0}, {"max_queue": 0}, {"max_wait_ms": -1}])
def test_bad_batching_settings_are_refused_with_a_reason(bad):
    async def scenario():
        Batcher(FakeEngine(), **bad)

    with pytest.raises(ValueError, match="must be"):
        run(scenario())


def test_http_overload_is_503_with_retry_after(tmp_path, he_tile_png):
    import threading

    engine = FakeEngine(delay_s=1.0)
    settings = Settings(model_dir=tmp_path, max_batch_size=1, max_queue=1, cache_size=0)
    with TestClient(create_app(settings, engine=engine)) as client:
        workers = [threading.Thread(target=predict, args=(client, he_tile_png)) for _ in range(2)]
        workers[0].start()
        assert engine.running.wait(5)  # the first is being answered…
        workers[1].start()  # …so the second waits in the queue
        deadline = time.monotonic() + 5
        while client.app.state.service.batcher.depth < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # one running, one waiting: the queue is full
        response = predict(client, he_tile_png)
        for worker in workers:
            worker.join()
    assert response.status_code == 503
    assert response.json()["error"] == "busy"
    assert int(response.headers["retry-after"]) >= 1
    assert len(engine.questions) == 2


def test_a_full_queue_refuses_before_decoding_the_image(tmp_path, he_tile_png, monkeypatch):
    """Decoding is the costly part of a request (an 89 Mpx PNG takes seconds and a GiB), so a
    request takes its queue place first: when there is none, it is refused without a decode."""
    import threading

    from healer.screening import service

    decoded = []

    def slow_decode(data, max_pixels):  # as costly as a large image
        decoded.append(len(data))
        time.sleep(1)
        return decode_image(data, max_pixels)

    monkeypatch.setattr(service, "decode_image", slow_decode)
    engine = FakeEngine(delay_s=1.5)
    settings = Settings(model_dir=tmp_path, max_batch_size=1, max_queue=1, cache_size=0)
    with TestClient(create_app(settings, engine=engine)) as client:
        workers = [threading.Thread(target=predict, args=(client, he_tile_png), kwargs={"question": f"q{i}?"})
                   for i in range(2)]
        workers[0].start()
        assert engine.running.wait(10)  # the first is being answered…
        workers[1].start()  # …so the second holds the only queue place while it decodes
        deadline = time.monotonic() + 5
        while client.app.state.service.batcher.depth < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        began = time.monotonic()
        response = predict(client, he_tile_png, question="refused?")
        seconds = time.monotonic() - began
        for worker in workers:
            worker.join()
    assert response.status_code == 503
    assert response.json()["error"] == "busy"
    assert seconds < 1, f"the refusal took {seconds:.1f} s"
    assert len(decoded) == 2  # the two accepted requests' images, never the refused one's
    assert engine.questions == ["q0?", "q1?"]


def test_http_timeout_is_504(tmp_path, he_tile_png):
    settings = Settings(model_dir=tmp_path, request_timeout_s=0.1)
    with TestClient(create_app(settings, engine=FakeEngine(delay_s=0.5))) as client:
        response = predict(client, he_tile_png)
    assert response.status_code == 504
    assert response.json()["error"] == "timeout"


def test_the_same_image_and_question_is_answered_from_the_cache(fake_client, fake_engine, he_tile_png):
    first = predict(fake_client, he_tile_png).json()
    second = predict(fake_client, he_tile_png).json()
    other_question = predict(fake_client, he_tile_png, question="Other?").json()
    assert (first["cached"], second["cached"], other_question["cached"]) == (False, True, False)
    assert second["answer"] == first["answer"] and second["probability"] == first["probability"]
    assert len(fake_engine.questions) == 2


def test_background_batches_take_turns_on_the_model_thread(he_tile):
    engine = FakeEngine(delay_s=0.2)

    async def scenario():
        batcher = Batcher(engine, max_batch_size=1, max_wait_ms=0, max_queue=1)
        tiles = asyncio.create_task(batcher.run_batch([Query(he_tile, f"tile{i}", explain=False) for i in range(3)]))
        await asyncio.sleep(0.01)
        answer = await batcher.submit(Query(he_tile, "request"))
        results = await tiles
        await batcher.drain(grace_s=1)
        return answer, results

    answer, results = run(scenario())
    assert len(results) == 3 and answer.p_yes == engine.p_yes
    assert engine.questions == ["tile0", "tile1", "tile2", "request"]  # one model call at a time


def test_the_model_runs_below_the_event_loops_priority_so_the_server_stays_responsive(he_tile):
    niceness = {}

    class Recording(FakeEngine):
        def generate(self, queries):
            niceness["model"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            return super().generate(queries)

    async def scenario():
        batcher = Batcher(Recording(), max_batch_size=1, max_wait_ms=0)
        await batcher.submit(Query(he_tile, "q"))
        niceness["event loop"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        await batcher.drain(grace_s=1)

    run(scenario())
    assert niceness["model"] > niceness["event loop"]

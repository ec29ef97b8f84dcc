"""One screening request, from uploaded bytes to the JSON answer.

`cache → place → decode → batch → decide`: identical requests are answered from memory; the
request takes its queue place before anything costly (a full queue refuses at once); the image
is decoded on the shared worker pool, at most DECODE_WORKERS at a time, straight down to the
model's input size, so a queued request holds only the small image; the model runs batches on
its own thread (healer.screening.batching), so the event loop stays free and the health check
answers in milliseconds meanwhile.
"""

import asyncio
import logging
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from healer import metrics
from healer.screening import answers, triage
from healer.screening.batching import Batcher
from healer.screening.cache import LRUCache, cache_key
from healer.model.engine import Engine, Generation, Query, TokenLogprob
from healer.screening.images import decode_image
from healer.text.prompts import DISCLAIMER
from healer.screening.schemas import Health, ModelCard, Prediction, SlideService, TriageBands
from healer.screening.streaming import PredictionStream
from healer.settings import Settings


@dataclass(frozen=True)
class Answered:
    prediction: Prediction
    logprobs: tuple[TokenLogprob, ...] | None  # each generated token's, when asked for (the OpenAI face)


log = logging.getLogger(__name__)


class ScreeningService:
    """Create inside a running event loop (the app's lifespan): the batcher starts a task."""

    def __init__(self, engine: Engine, settings: Settings):
        self.engine = engine
        self.settings = settings
        self.model_card = ModelCard.of(engine.info)
        adapter = engine.info.adapter
        self.threshold = settings.threshold_for(adapter.threshold if adapter else None)
        self.triage = settings.triage
        self._check_triage_file(engine, settings)
        metrics.show_adapter(self.model_card.adapter)
        metrics.show_compute(engine.info.compute)
        self.batcher = Batcher(
            engine, settings.max_batch_size, settings.batch_wait_ms, settings.max_queue,
            on_batch=metrics.observe_batch,
        )
        metrics.QUEUE_DEPTH.set_function(lambda: self.batcher.depth)
        self.cache: LRUCache[Prediction] = LRUCache(settings.cache_size)
        self._decoding = asyncio.Semaphore(settings.decode_workers)  # full-size images in memory at once

    @staticmethod
    def _check_triage_file(engine: Engine, settings: Settings) -> None:
        """TRIAGE_FILE's thresholds hold only for the model they were chosen with: another one stops
        the start; another quantization or engine is only warned about (its scores move a little)."""
        calibrated = settings.triage_file and triage.calibrated_model(settings.triage_file)
        if not calibrated:
            return
        if problem := triage.model_mismatch(calibrated, engine.info):
            raise ValueError(f"TRIAGE_FILE {settings.triage_file} does not hold for this model: {problem}. "
                             "Run `python -m healer.evaluate … --triage` with the served model")
        for field in ("quantization", "engine"):
            if calibrated.get(field) not in (None, getattr(engine.info, field)):
                log.warning("TRIAGE_FILE %s was chosen with %s=%s, and this service runs %s: its scores can "
                            "differ a little; re-run the evaluation with the served settings to keep the guarantee",
                            settings.triage_file, field, calibrated[field], getattr(engine.info, field))

    def health(self) -> Health:
        bucket = (self.settings.slide_store or "").startswith("gs://")
        slides = SlideService(upload="bucket" if bucket else "form", max_slide_mb=self.settings.max_slide_mb)
        return Health(status="ok", model=self.model_card, slides=slides, triage=TriageBands.of(self.triage),
                      disclaimer=DISCLAIMER)

    async def predict(self, data: bytes, question: str, explain: bool = True) -> Prediction:
        return (await self.answer(data, question, explain)).prediction

    async def answer(self, data: bytes, question: str, explain: bool = True, top_logprobs: int | None = None) -> Answered:
        """The prediction, and each token's logprobs when `top_logprobs` asks (never from the cache)."""
        started = time.perf_counter()
        key = cache_key(data, question, explain)
        if top_logprobs is None and (cached := self._cached(key, started)):
            return Answered(cached, None)
        async with self.batcher.place():
            image = await self._decode(data)
            decoded = time.perf_counter()
            generation = await self.batcher.submit(
                Query(image, question, explain, top_logprobs=top_logprobs),
                timeout_s=self.settings.request_timeout_s, placed=True,
            )
        return Answered(self.remember(key, self.prediction(generation, question, started, decoded)), generation.logprobs)

    async def stream(self, data: bytes, question: str, explain: bool = True,
                     top_logprobs: int | None = None) -> PredictionStream:
        """The same answer as it forms (healer.screening.streaming). Its queue place is taken and
        its image decoded here, so a full queue (503) or a bad image (400) is refused before the
        stream opens; the stream gives the place back when it ends, however it ends."""
        started = time.perf_counter()
        key = cache_key(data, question, explain)
        if top_logprobs is None and (cached := self._cached(key, started)):
            return PredictionStream.answered_from(cached)
        held = AsyncExitStack()
        await held.enter_async_context(self.batcher.place())
        try:
            image = await self._decode(data)
        except BaseException:
            await held.aclose()
            raise
        decoded = time.perf_counter()
        return PredictionStream(
            held, Query(image, question, explain, top_logprobs=top_logprobs),
            submit=lambda query: self.batcher.submit(query, timeout_s=self.settings.request_timeout_s, placed=True),
            predict=lambda generation: self.prediction(generation, question, started, decoded),
            keep=lambda prediction: self.remember(key, prediction),
        )

    def prediction(self, generation: Generation, question: str, started: float, decoded: float) -> Prediction:
        """The answer to one query from what the engine generated (or, streamed, from what it had
        generated so far: the same rule, so the early answer and the final one agree)."""
        verdict = answers.decide(
            generation.text, generation.p_yes, generation.answer_label, generation.answer_mass,
            threshold=self.threshold, min_answer_mass=self.settings.min_answer_mass,
        )
        return Prediction(
            answer=verdict.answer,
            probability=verdict.probability,
            answer_mass=generation.answer_mass,
            min_answer_mass=self.settings.min_answer_mass,
            unseen_mass=generation.unseen_mass,
            explanation=verdict.explanation,
            prediction=verdict.prediction,
            question=question,
            threshold=self.threshold,
            triage=self.triage and self.triage.band(
                verdict.probability, generation.answer_mass >= self.settings.min_answer_mass),
            model=self.model_card,
            timings_ms={
                "decode_image": round((decoded - started) * 1000, 1),
                **generation.timings_ms,
                "total": _ms_since(started),
            },
            cached=False,
            disclaimer=DISCLAIMER,
        )

    def remember(self, key: str, prediction: Prediction) -> Prediction:
        self.cache.put(key, prediction)
        return prediction

    def _cached(self, key: str, started: float) -> Prediction | None:
        if cached := self.cache.get(key):
            metrics.CACHE_HITS.inc()
            return cached.model_copy(update={"cached": True, "timings_ms": {"total": _ms_since(started)}})
        return None

    async def _decode(self, data: bytes):
        async with self._decoding:
            return await run_in_threadpool(decode_image, data, self.settings.max_image_pixels)

    async def close(self) -> None:
        await self.batcher.drain(self.settings.shutdown_grace_s)


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)

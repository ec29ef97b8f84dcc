"""One screening request, from uploaded bytes to the JSON answer.

`decode → generate → decide`: the image is decoded on the shared worker pool, the model runs on
its own single thread (one model, one batch at a time), and the event loop stays free, so the
health check answers in milliseconds while a prediction runs.
"""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from starlette.concurrency import run_in_threadpool

from healer import answers
from healer.engine import Engine, Query
from healer.images import decode_image
from healer.prompts import DISCLAIMER
from healer.schemas import Health, ModelCard, Prediction
from healer.settings import Settings


class ScreeningService:
    def __init__(self, engine: Engine, settings: Settings):
        self.engine = engine
        self.settings = settings
        self.model_card = ModelCard(**vars(engine.info))
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")

    def health(self) -> Health:
        return Health(status="ok", model=self.model_card, disclaimer=DISCLAIMER)

    async def predict(self, data: bytes, question: str, explain: bool = True) -> Prediction:
        started = time.perf_counter()
        image = await run_in_threadpool(decode_image, data, self.settings.max_image_pixels)
        decoded = time.perf_counter()
        loop = asyncio.get_running_loop()
        [generation] = await loop.run_in_executor(
            self._model_thread, self.engine.generate, [Query(image, question, explain)]
        )
        verdict = answers.decide(generation)
        timings = {
            "decode_image": _ms(decoded - started),
            **generation.timings_ms,
            "total": _ms(time.perf_counter() - started),
        }
        return Prediction(
            answer=verdict.answer,
            probability=verdict.probability,
            explanation=verdict.explanation,
            prediction=verdict.prediction,
            question=question,
            model=self.model_card,
            timings_ms=timings,
            disclaimer=DISCLAIMER,
        )

    def close(self) -> None:
        self._model_thread.shutdown(wait=True)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)

"""A stand-in engine for HTTP-contract tests: canned output, optional delay, no torch. Streamed
queries hear the answer at once, then the text word by word, the delay spread over the words."""

import threading
import time
from collections.abc import Sequence

from healer.model.engine import Engine, Generation, Label, ModelInfo, Query


class FakeEngine(Engine):
    def __init__(
        self,
        text: str = "Yes. Irregular glands with cribriform architecture invade the stroma.",
        p_yes: float = 0.93,
        answer_label: Label | None = "yes",
        answer_mass: float = 0.97,
        delay_s: float = 0.0,
    ):
        self.text = text
        self.p_yes = p_yes
        self.answer_label = answer_label
        self.answer_mass = answer_mass
        self.delay_s = delay_s
        self.info = ModelInfo("fake/engine", None, "cpu", "none", demo=True)
        self.questions: list[str] = []  # what it was asked (not the images: load tests stay small)
        self.running = threading.Event()  # set while a batch is being answered

    def generate(self, queries: Sequence[Query]) -> list[Generation]:
        self.running.set()
        try:
            self.questions.extend(q.question for q in queries)
            streamed = [q for q in queries if q.listener is not None]
            if streamed:
                self._stream(streamed)
            else:
                time.sleep(self.delay_s)
            return [
                Generation(
                    text=self.text if q.explain else "",
                    p_yes=self.p_yes,
                    answer_label=self.answer_label,
                    answer_mass=self.answer_mass,
                    answer_step=0 if self.answer_label else None,
                    timings_ms={"preprocess": 0.0, "model": self.delay_s * 1000},
                )
                for q in queries
            ]
        finally:
            self.running.clear()

    def _stream(self, queries: Sequence[Query]) -> None:
        reading = Generation(text="", p_yes=self.p_yes, answer_label=self.answer_label,
                             answer_mass=self.answer_mass, answer_step=0 if self.answer_label else None)
        words = self.text.split(" ")
        for q in queries:
            if self.answer_label:
                q.listener.answered(reading)
        for count in range(1, len(words) + 1):
            time.sleep(self.delay_s / len(words))
            live = [q for q in queries if not q.listener.cancelled]
            if not live:
                return  # nobody waits: the rest is never generated
            for q in live:
                if q.explain:
                    q.listener.wrote(" ".join(words[:count]))

"""A streamed answer: one query's progress in the engine, as the events a streamed /predict sends.

    answer   the screening answer, once it is final: label, P(yes), answer mass, threshold, triage
    token    the model's text as it grows (each event carries what is new)
    done     the Prediction the same request would get unstreamed, field for field
    error    the usual error body, should anything fail once the stream is open

The answer is final at the answer step for an answer-only query; for an explained one when the
text's answer word is settled (healer.text.answer_step.answer_settled: one character more shows
"Yes" is not "Yesterday"), which is a token or so later; without an answer step, at the end.
Both are built by the service's own rule from what the engine had generated (`prediction`), so
the early answer is the final one.

The engine tells the stream from its own thread (healer.model.engine.Listener); the events are
read on the event loop. When the stream ends early (the client went away), its listener is
cancelled: queued, the query leaves the queue; running, its row leaves the batch.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, suppress
from dataclasses import replace
from pydantic import BaseModel

from healer.errors import HealerError
from healer.model.engine import Generation, Listener, Query, TokenLogprob
from healer.screening.schemas import Prediction, StreamedAnswer, StreamedText
from healer.text.answer_step import answer_settled

log = logging.getLogger(__name__)
PENDING_CHARACTER = "\ufffd"  # a character whose bytes span tokens decodes as this until it is whole

Event = tuple[str, BaseModel | HealerError]  # the API writes an error as its usual body


class PredictionStream(Listener):
    """`submit` queues the query and returns what the engine generated; `predict` is the service's
    rule from a generation (complete, or so far) to a Prediction; `keep` remembers the final one."""

    def __init__(self, held: AsyncExitStack | None, query: Query,
                 submit: Callable[[Query], Awaitable[Generation]], predict: Callable[[Generation], Prediction],
                 keep: Callable[[Prediction], None] = lambda prediction: None):
        self.held, self.submit, self.predict, self.keep = held, submit, predict, keep
        self.query = replace(query, listener=self)
        self.finished: Prediction | None = None
        self.logprobs: tuple[TokenLogprob, ...] | None = None  # set before `done`, when the query asked
        self._loop = asyncio.get_running_loop()
        self._told: asyncio.Queue = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._reading: Generation | None = None
        self._text = ""  # all the text so far
        self._sent = ""  # the part of it already sent
        self._answered = False

    @classmethod
    def answered_from(cls, prediction: Prediction) -> "PredictionStream":
        """A stream of an answer already known (from the cache): answer, then done."""
        stream = cls(None, Query(None, prediction.question), submit=None, predict=None)
        stream.finished = prediction
        return stream

    # The engine's side (its own thread).
    def answered(self, reading: Generation) -> None:
        self._loop.call_soon_threadsafe(self._told.put_nowait, ("answered", reading))

    def wrote(self, text: str) -> None:
        self._loop.call_soon_threadsafe(self._told.put_nowait, ("wrote", text))

    # The client's side.
    async def events(self) -> AsyncIterator[Event]:
        try:
            if self.finished is not None:
                yield "answer", StreamedAnswer.of(self.finished)
                yield "done", self.finished
                return
            self._task = asyncio.create_task(self.submit(self.query))
            while not self._task.done():
                told = asyncio.create_task(self._told.get())
                await asyncio.wait({told, self._task}, return_when=asyncio.FIRST_COMPLETED)
                if not told.done():
                    told.cancel()
                    break
                for event in self._take(*told.result()):
                    yield event
            while not self._told.empty():  # what the engine told before it returned
                for event in self._take(*self._told.get_nowait()):
                    yield event
            generation = self._task.result()
            self.logprobs = generation.logprobs
            prediction = self.predict(generation)
            self.keep(prediction)
            if not self._answered:
                yield "answer", StreamedAnswer.of(prediction)
            if rest := self._unsent(generation.text):
                yield "token", StreamedText(text=rest)
            yield "done", prediction
        except HealerError as error:
            yield "error", error
        except Exception as error:  # noqa: BLE001 - the stream is open: it ends with the usual body
            log.exception("streamed answer failed with %s", type(error).__name__)
            yield "error", HealerError()
        finally:
            await self.close()

    async def close(self) -> None:
        """Ends the stream's work, whether it finished, failed or its client left (idempotent)."""
        self.cancelled = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.held is not None:
            held, self.held = self.held, None
            await held.aclose()

    def _take(self, kind: str, value) -> list[Event]:
        if kind == "answered":
            self._reading = value
        else:
            self._text = value
        events: list[Event] = []
        if not self._answered and self._reading is not None and (not self.query.explain or answer_settled(self._text)):
            so_far = replace(self._reading, text=self._text)
            events.append(("answer", StreamedAnswer.of(self.predict(so_far))))
            self._answered = True
        if self._answered and (new := self._unsent(self._text)):
            events.append(("token", StreamedText(text=new)))
        return events

    def _unsent(self, text: str) -> str:
        """What `text` adds to what was sent, holding back a character still incomplete."""
        text = text.rstrip(PENDING_CHARACTER)
        if not text.startswith(self._sent) or len(text) == len(self._sent):
            return ""
        new, self._sent = text[len(self._sent):], text
        return new

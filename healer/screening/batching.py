"""Micro-batching with backpressure: concurrent requests share one model call, within limits.

Requests wait in a bounded queue. One background task takes the oldest, gathers up to
`max_batch_size - 1` more of the same kind (explained or answer-only) that arrive within
`max_wait_ms`, and runs them as one batch on the model thread. Requests already admitted and
still decoding their image are waited for too, up to `max_prepare_wait_s`: they join in tens of
milliseconds, where a second model call would cost them seconds (four clients at once at full
size on 2 CPUs went in two calls when the batch left 10 ms after the first). The engine's
left-padded batch gives each query the answer it would get alone (within numerical noise).

- A full queue refuses at once (`Busy`, 503 with Retry-After) without touching the model. A
  request takes its place (`place()`) before its image is decoded, so a refusal costs nothing
  and the images decoded at once are bounded by the queue.
- A request that waits longer than its timeout is answered 504 (`TimedOut`); if it was still
  queued, its place is freed and the model never sees it. A caller that goes away (a streamed
  answer whose client disconnected) is treated the same, and a streamed row already in the
  running batch leaves it (healer.model.engine.Listener).
- `drain()` stops new work and waits for everything accepted to finish (graceful shutdown).
"""

import asyncio
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from healer.model.engine import Engine, Generation, Query
from healer.errors import Busy, NotReady, TimedOut

log = logging.getLogger(__name__)

# The model thread runs below the event loop's priority: on 2 CPUs its compute threads would
# otherwise hold both cores while `GET /` and new uploads wait (p99 60-66 ms at full size). Linux
# priorities are per thread and the model thread's OpenMP workers are created by it, so they
# inherit the lower priority; the event loop keeps the default one.
MODEL_THREAD_NICE = 10


def _lower_model_thread_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), MODEL_THREAD_NICE)
    except (OSError, AttributeError):  # not Linux, or not allowed: run at the default priority
        log.info("could not lower the model thread's priority")


@dataclass
class _Pending:
    query: Query
    future: asyncio.Future
    queued_at: float = field(default_factory=time.monotonic)


class Batcher:
    def __init__(
        self,
        engine: Engine,
        max_batch_size: int = 4,
        max_wait_ms: float = 10.0,
        max_queue: int = 16,
        max_prepare_wait_s: float = 1.0,
        on_batch: Callable[[int, float], None] = lambda size, seconds: None,
    ):
        if max_batch_size < 1 or max_queue < 1 or max_wait_ms < 0 or max_prepare_wait_s < 0:
            raise ValueError("max_batch_size and max_queue must be >= 1, the waits >= 0")
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self.max_queue = max_queue
        self.max_prepare_wait_s = max_prepare_wait_s
        self.on_batch = on_batch
        self._queue: deque[_Pending] = deque()
        self._arrived = asyncio.Event()
        self._model_thread = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="model", initializer=_lower_model_thread_priority
        )
        self._in_flight = 0
        self._placed = 0  # places taken by requests still decoding their image
        self._accepting = True
        self._seconds_per_batch = 1.0  # refined by every batch; drives Retry-After
        self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    @property
    def depth(self) -> int:
        """Requests accepted and not yet answered: decoding, waiting, in the running batch."""
        return self._placed + len(self._queue) + self._in_flight

    def retry_after_s(self) -> int:
        batches_ahead = math.ceil((len(self._queue) + 1) / self.max_batch_size) + (self._in_flight > 0)
        return max(1, math.ceil(batches_ahead * self._seconds_per_batch))

    @asynccontextmanager
    async def place(self) -> AsyncIterator[None]:
        """A queue place held while the request prepares its query; `submit` inside the block
        uses it. Busy (or NotReady) at once when there is none."""
        self._check_room()
        self._placed += 1
        try:
            yield
        finally:
            self._placed -= 1
            self._arrived.set()  # a batch waiting for this request stops waiting if it left

    def _check_room(self) -> None:
        if not self._accepting:
            raise NotReady("The service is shutting down. Retry on another instance.")
        if self._placed + len(self._queue) >= self.max_queue:
            raise Busy(retry_after_s=self.retry_after_s())

    async def submit(self, query: Query, timeout_s: float | None = None, placed: bool = False) -> Generation:
        """`placed`: called inside `place()`, whose place this request now fills."""
        if placed:
            self._placed -= 1  # the place moves into the queue (and back when the block ends)
        try:
            if not placed:
                self._check_room()
            return await self._wait(query, timeout_s)
        finally:
            if placed:
                self._placed += 1

    async def _wait(self, query: Query, timeout_s: float | None) -> Generation:
        pending = _Pending(query, asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        self._arrived.set()
        try:
            return await asyncio.wait_for(asyncio.shield(pending.future), timeout_s)
        except asyncio.TimeoutError:
            self._abandon(pending)
            raise TimedOut() from None
        except asyncio.CancelledError:  # the caller went away (a streamed answer's client left)
            self._abandon(pending)
            raise

    def _abandon(self, pending: _Pending) -> None:
        """Nobody waits for this query any more: out of the queue if it is still there (the model
        never sees it); a streamed one in the running batch is dropped by its cancelled listener."""
        if pending in self._queue:
            self._queue.remove(pending)
        if pending.query.listener is not None:
            pending.query.listener.cancelled = True
        pending.future.cancel()

    async def run_batch(self, queries: list[Query]) -> list[Generation]:
        """For background work (slide tiles): one batch on the model thread, taking turns with
        the request batches, outside the request queue and its limits."""
        if not self._accepting:
            raise NotReady("The service is shutting down.")
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        results = await loop.run_in_executor(self._model_thread, self.engine.generate, queries)
        self.on_batch(len(queries), time.perf_counter() - started)
        return results

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            batch = await self._gather()
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(
                    self._model_thread, self.engine.generate, [p.query for p in batch]
                )
            except Exception as error:  # the whole batch fails together; each caller hears it
                log.warning("batch of %d failed with %s", len(batch), type(error).__name__)
                results = [error] * len(batch)
            finally:
                self._in_flight = 0
            seconds = time.perf_counter() - started
            self._seconds_per_batch = 0.8 * self._seconds_per_batch + 0.2 * seconds
            self.on_batch(len(batch), seconds)
            for pending, result in zip(batch, results):
                if pending.future.done():
                    continue  # timed out while running: nobody is waiting
                if isinstance(result, Exception):
                    pending.future.set_exception(result)
                else:
                    pending.future.set_result(result)

    async def _gather(self) -> list[_Pending]:
        first = self._queue.popleft()
        batch = [first]
        self._in_flight = 1
        started = time.monotonic()
        while len(batch) < self.max_batch_size:
            same_kind = next((p for p in self._queue if p.query.explain == first.query.explain), None)
            if same_kind is not None:
                self._queue.remove(same_kind)
                batch.append(same_kind)
                self._in_flight = len(batch)
                continue
            # A request still decoding its image (of either kind: not known yet) is worth waiting for.
            wait_s = max(self.max_wait_s, self.max_prepare_wait_s if self._placed else 0)
            remaining = started + wait_s - time.monotonic()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                break
        return batch

    async def drain(self, grace_s: float) -> None:
        """Refuse new work; wait up to `grace_s` for accepted work to finish; stop."""
        self._accepting = False
        deadline = time.monotonic() + grace_s
        while self.depth and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.depth:
            log.warning("shutdown grace period over with %d requests unanswered", self.depth)
        self._task.cancel()
        self._model_thread.shutdown(wait=False, cancel_futures=True)

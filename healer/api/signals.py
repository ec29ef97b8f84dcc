"""SIGTERM and SIGINT as the app sees them, before uvicorn's own handling.

uvicorn's handler only sets a flag that its main loop reads once start-up is over. Start-up
itself cannot wait for that: loading and warming up the model can take minutes (hours, on a CPU
whose kernels are wrong for it), and Cloud Run sends SIGKILL 10 s after SIGTERM.

So the lifespan installs this first: the `stopping` event is set on the event loop, then uvicorn's
handler runs as before (open event streams are sse-starlette's to end: healer.api.sse). Signal
handlers can only be installed on the main thread: under TestClient this does nothing.
"""

import asyncio
import signal
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class StartupStopped(Exception):
    """SIGTERM or SIGINT came while the app was starting."""


class ExitSignal:
    def __init__(self) -> None:
        self.stopping = asyncio.Event()

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(number)
            if not callable(previous):
                continue

            def handler(signum, frame, previous=previous):
                loop.call_soon_threadsafe(self.stopping.set)
                previous(signum, frame)

            try:
                signal.signal(number, handler)
            except ValueError:  # not the main thread
                return

    async def unless_stopped(self, work: Awaitable[T]) -> T:
        """`work`'s result, or StartupStopped as soon as a signal comes, without waiting for it."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if task.done():
            return task.result()
        raise StartupStopped("stopped during start-up: the model's load and warm-up are abandoned")


def in_daemon_thread(function: Callable[[], T]) -> "asyncio.Future[T]":
    """function() on a thread of its own that the interpreter does not wait for at exit (the
    threads of asyncio.to_thread's pool it does wait for: a warm-up abandoned there would still
    hold the process until it finished)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if not future.done():
            future.set_exception(error) if error is not None else future.set_result(result)

    def run() -> None:
        try:
            result, error = function(), None
        except BaseException as caught:  # handed to the awaiting coroutine, which re-raises it
            result, error = None, caught
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop is gone: nobody waits for this any more
            pass

    threading.Thread(target=run, name="healer-start-up", daemon=True).start()
    return future

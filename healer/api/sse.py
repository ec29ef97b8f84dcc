"""Server-sent events, the one way Healer streams: a streamed /predict and a slide job's progress.

sse-starlette writes the events, pings an idle connection every 15 s (so proxies keep it open)
and notices a client that left; this module turns (name, payload) pairs into events, a
HealerError into the usual error body. On SIGTERM, sse-starlette ends open streams: at once
(slide progress, which may run for an hour: the client reconnects to another instance), or after
`grace_s` for a stream that is an answer being finished (the same grace as unstreamed requests).
"""

from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask

from healer.api.schemas import ErrorBody
from healer.errors import HealerError
from healer.logs import request_id

PING_S = 15


def event_stream(events: AsyncIterator[tuple[str, BaseModel | HealerError]],
                 on_close: Callable[[], Awaitable[None]] | None = None, grace_s: float = 0) -> EventSourceResponse:
    """`on_close` runs when the response is over, however it ended (also when the client left
    before the first event, when the generator never started)."""

    async def encoded() -> AsyncIterator[ServerSentEvent]:
        async for name, payload in events:
            if isinstance(payload, HealerError):
                payload = ErrorBody(error=payload.code, detail=payload.message, request_id=request_id.get())
            yield ServerSentEvent(data=payload.model_dump_json(), event=name)

    return EventSourceResponse(
        encoded(), ping=PING_S, background=BackgroundTask(on_close) if on_close else None,
        shutdown_event=anyio.Event() if grace_s else None, shutdown_grace_period=grace_s,
        headers={"X-Accel-Buffering": "no"},  # no proxy buffering: each event leaves when written
    )

"""A small OpenAI-compatible vision server, for the tests of healer.model.openai_engine: real HTTP
on 127.0.0.1 (uvicorn on a thread), `GET /v1/models` and streamed `POST /v1/chat/completions`
with logprobs, as vLLM streams them (one token a chunk, after a first chunk naming the role).

    with FakeOpenAI() as server:                    server.url is the OpenAI base URL (…/v1)
        server.scripts["Is it?"] = [Token("No", top=[("No", -0.1), ("Yes", -2.4)]), Token(".")]

What it answers is scripted per question; it can be told to never become ready, to want a key,
to be slow, to refuse answers, to send no logprobs, or to drop the connection mid-answer; it records every request, every stream's end
(how many tokens it sent, whether the client left first) and how many streams overlapped.
"""

import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route


@dataclass(frozen=True)
class Token:
    text: str
    logprob: float = -0.01
    top: tuple[tuple[str, float], ...] | list[tuple[str, float]] | None = None  # None: this token alone


def tokens(*texts: str) -> list[Token]:
    """Tokens with no alternatives worth listing: the tail of an answer."""
    return [Token(text) for text in texts]


DEFAULT_ANSWER = [Token("Yes", -0.1, (("Yes", -0.1), ("No", -2.5), ("The", -5.0))),
                  *tokens(".", " Irregular", " glands", " invade", " the", " stroma", ".")]


@dataclass
class StreamEnd:
    sent: int  # tokens sent before the stream ended
    completed: bool  # every token sent and [DONE]: the client read to the end
    disconnected: bool  # the client closed the stream first


class DroppedOnPurpose(Exception):
    """Raised inside a stream: uvicorn closes the connection mid-answer, as a dying engine does."""


@dataclass
class FakeOpenAI:
    models: list[str] = field(default_factory=lambda: ["medgemma"])
    ready: bool = True  # False: GET /models answers 503 for ever, as llama-server while it loads
    api_key: str | None = None  # when set, every request needs "Authorization: Bearer <it>"
    scripts: dict[str, list[Token]] = field(default_factory=dict)  # question → what it answers
    default: list[Token] = field(default_factory=lambda: list(DEFAULT_ANSWER))
    token_delay_s: float = 0.0  # between tokens
    first_token_delay_s: float = 0.0  # after the headers, before the first token
    drop_after: int | None = None  # tokens sent before the connection is dropped
    refuse_chat: int | None = None  # an HTTP status every chat completion is refused with
    send_logprobs: bool = True  # False: a server started without logprobs (text only)
    tokens_per_chunk: int = 1  # vLLM's CPU build sends a dozen tokens in one chunk
    bytes_for_non_ascii: bool = False  # list non-ASCII tokens as "bytes:\\x..", as vLLM does for a partial character

    def __post_init__(self) -> None:
        self.requests: list[dict] = []  # chat completion bodies, as received
        self.authorizations: list[str | None] = []  # every request's Authorization header
        self.ends: list[StreamEnd] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.url = ""

    # -- the server ------------------------------------------------------------------------------

    def __enter__(self) -> "FakeOpenAI":
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        app = Starlette(routes=[Route("/v1/models", self._models), Route("/v1/chat/completions", self._chat,
                                                                          methods=["POST"])])
        self._server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_config=None, access_log=False))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "the fake OpenAI server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop listening: from now on the engine is unreachable."""
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def wait_for_ends(self, count: int, timeout_s: float = 10) -> list[StreamEnd]:
        deadline = time.monotonic() + timeout_s
        while len(self.ends) < count:
            assert time.monotonic() < deadline, f"{len(self.ends)} of {count} streams ended"
            time.sleep(0.01)
        return self.ends

    # -- the endpoints ---------------------------------------------------------------------------

    def _refused(self, request: Request) -> JSONResponse | None:
        authorization = request.headers.get("authorization")
        self.authorizations.append(authorization)
        if self.api_key is not None and authorization != f"Bearer {self.api_key}":
            return _error(401, "invalid API key")
        return None

    async def _models(self, request: Request):
        if refused := self._refused(request):
            return refused
        if not self.ready:
            return _error(503, "the model is still loading")
        return JSONResponse({"object": "list", "data": [
            {"id": model, "object": "model", "created": 0, "owned_by": "fake"} for model in self.models]})

    async def _chat(self, request: Request):
        if refused := self._refused(request):
            return refused
        body = await request.json()
        self.requests.append(body)
        if self.refuse_chat is not None:
            return _error(self.refuse_chat, "refused")
        question = next(part["text"] for part in body["messages"][-1]["content"] if part["type"] == "text")
        script = self.scripts.get(question, self.default)[: body.get("max_tokens") or None]
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        return StreamingResponse(self._stream(body, script), media_type="text/event-stream")

    async def _stream(self, body: dict, script: list[Token]):
        sent, completed = 0, False
        try:
            yield _event(body, {"role": "assistant", "content": ""})
            await asyncio.sleep(self.first_token_delay_s)
            for start in range(0, len(script), self.tokens_per_chunk):
                if self.drop_after is not None and sent >= self.drop_after:
                    raise DroppedOnPurpose()
                chunk = script[start:start + self.tokens_per_chunk]
                top_k = body.get("top_logprobs") or 0
                logprobs = {"content": [entry for token in chunk for entry in _logprobs(token, top_k)["content"]]}
                if self.bytes_for_non_ascii:
                    for entry in logprobs["content"]:
                        if not entry["token"].isascii():
                            entry["token"] = "bytes:" + "".join(f"\\x{b:02x}" for b in entry["token"].encode())
                yield _event(body, {"content": "".join(token.text for token in chunk)},
                             logprobs if self.send_logprobs else None)
                sent += len(chunk)
                await asyncio.sleep(self.token_delay_s)
            finish = "length" if len(script) == body.get("max_tokens") else "stop"
            yield _event(body, {}, finish_reason=finish)
            yield "data: [DONE]\n\n"
            completed = True
        finally:
            self.in_flight -= 1
            dropped = self.drop_after is not None and sent >= self.drop_after
            self.ends.append(StreamEnd(sent, completed, disconnected=not completed and not dropped))


def _logprobs(token: Token, top_k: int) -> dict:
    top = list(token.top) if token.top is not None else [(token.text, token.logprob)]
    return {"content": [{
        "token": token.text, "logprob": token.logprob, "bytes": list(token.text.encode()),
        "top_logprobs": [{"token": text, "logprob": logprob, "bytes": list(text.encode())}
                         for text, logprob in top[:top_k]],
    }]}


def _event(body: dict, delta: dict, logprobs: dict | None = None, finish_reason: str | None = None) -> str:
    chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
             "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}]}
    return f"data: {json.dumps(chunk)}\n\n"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "error", "code": status}}, status_code=status)

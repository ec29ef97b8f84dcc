"""Per-request context (request id, security headers, access log line and metrics, the
last-resort 500) and the streamed body limit.

The request id comes from the client's X-Request-ID when it is a sane token, else it is new;
it is echoed in the response header and in every error body. An exception no handler took is
logged here, with its traceback and the request id, and answered with a generic JSON 500 that
reveals nothing of it. Nothing here reads a body.
"""

import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from healer.errors import HealerError
from healer.api.handlers import BodyTooLarge, error_response, upload_too_large
from healer.logs import request_id, without_job_ids
from healer.metrics import observe_request

_SANE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def page_csp(upload_origin: str | None = None) -> str:
    """The page loads only its own files; images are previewed from blob: URLs. It talks to this
    service, and to Cloud Storage's upload origin when slides go straight to the bucket."""
    connect = "'self'" + (f" {upload_origin}" if upload_origin else "")
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        f"connect-src {connect}; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    )


def _security_headers(path: str, csp: str) -> dict[str, str]:
    if path.startswith("/app"):
        return {**_ALWAYS, "Content-Security-Policy": csp}
    # Answers about patients' tissue must not sit in shared caches.
    return {**_ALWAYS, "Cache-Control": "no-store"}
access_log = logging.getLogger("healer.access")
log = logging.getLogger(__name__)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, upload_origin: str | None = None):
        self.app = app
        self.csp = page_csp(upload_origin)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if _SANE_ID.match(incoming) else uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = rid
                for name, value in _security_headers(scope["path"], self.csp).items():
                    headers.setdefault(name, value)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unexpected error on %s %s", scope["method"], without_job_ids(scope["path"]))
            if status:
                raise
            await error_response(500, HealerError.code, HealerError.message, path=scope["path"])(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            access_log.info("%s %s %d %.1f ms", scope["method"], without_job_ids(scope["path"]), status,
                            seconds * 1000)
            observe_request(scope, status, seconds)
            request_id.reset(token)


class BodyLimitMiddleware:
    """Refuses a body over `max_bytes` while it streams in, never after buffering it.

    A declared Content-Length over the limit is answered at once; a chunked body is counted as
    it arrives and cut off by a 413 that FastAPI's form parser passes through unchanged.
    Limits are (bytes, the setting that sets them); `path_limits` gives exact paths their own
    (slide uploads are far larger than images).
    """

    def __init__(self, app: ASGIApp, limit: tuple[int, str], path_limits: dict[str, tuple[int, str]] | None = None):
        self.app = app
        self.limit = limit
        self.path_limits = path_limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes, setting = self.path_limits.get(scope["path"], self.limit)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > max_bytes:
            await upload_too_large(setting, scope["path"])(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > max_bytes:
                raise BodyTooLarge(setting)
            return message

        await self.app(scope, counting_receive, send)


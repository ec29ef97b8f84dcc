"""Every error leaves as `ErrorBody` JSON: a reason code, a sentence for people, the request id.

Domain errors keep their status; FastAPI's validation errors become 422 `invalid_request`
naming the field; the streamed body limit's 413 becomes `upload_too_large`. Anything
unexpected is left to `healer.api.middleware`, which logs it and answers a generic 500.
"""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from healer.errors import HealerError
from healer.logs import request_id, without_job_ids

log = logging.getLogger(__name__)



class BodyTooLarge(HTTPException):
    """A request body over its limit; `setting` names the limit, for the person reading."""

    def __init__(self, setting: str):
        super().__init__(413)
        self.setting = setting


OPENAI_PREFIX = "/v1/"  # the OpenAI-compatible face answers errors in OpenAI's shape


def error_response(status: int, code: str, detail: str, headers: dict | None = None, path: str = "") -> JSONResponse:
    if path.startswith(OPENAI_PREFIX):
        return openai_error(status, code, detail, headers)
    body = {"error": code, "detail": detail, "request_id": request_id.get()}
    return JSONResponse(body, status_code=status, headers=headers)


def openai_error(status: int, code: str, detail: str, headers: dict | None = None) -> JSONResponse:
    """OpenAI's error body, which its clients raise as their own errors (the request id in the message)."""
    kind = ("authentication_error" if status == 401 else "invalid_request_error" if status < 500 else "server_error")
    body = {"error": {"message": f"{detail} (request id {request_id.get()})", "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def upload_too_large(setting: str, path: str = "") -> JSONResponse:
    return error_response(413, "upload_too_large", f"The upload is larger than this service accepts (see {setting}).",
                          path=path)


async def _domain_error(request: Request, error: HealerError) -> JSONResponse:
    log.info("rejected %s %s: %s", request.method, without_job_ids(request.url.path), error.code)
    return error_response(error.status, error.code, error.message, error.headers, request.url.path)


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item.get("loc", ())[1:]) or "body"
        problems.append(f"{field}: {item.get('msg', 'invalid')}")
    return error_response(422, "invalid_request", "Invalid request. " + "; ".join(problems) + ".",
                          path=request.url.path)


async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    path = request.url.path
    if isinstance(error, BodyTooLarge):
        return upload_too_large(error.setting, path)
    if error.status_code == 404:
        return error_response(404, "not_found", "There is nothing at this path.", path=path)
    if error.status_code == 405:
        return error_response(405, "method_not_allowed", "This path does not accept that method.", path=path)
    return error_response(error.status_code, "http_error", "The request could not be served.", error.headers, path)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HealerError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)

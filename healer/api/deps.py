"""What more than one router needs: the services behind the routes, the API key, the
question rule and the error entries of the OpenAPI schema."""

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from healer.api.schemas import ErrorBody
from healer.errors import BadQuestion, NotReady, Unauthorized
from healer.text.prompts import DEFAULT_QUESTION
from healer.screening.service import ScreeningService
from healer.slides.jobs import SlideJobs


def get_service(request: Request) -> ScreeningService:
    service = getattr(request.app.state, "service", None)
    if service is None:
        raise NotReady()
    return service


def get_jobs(request: Request) -> SlideJobs:
    jobs = getattr(request.app.state, "slide_jobs", None)
    if jobs is None:
        raise NotReady()
    return jobs


def require_api_key(
    request: Request,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    """On top of Cloud Run IAM: when API_KEY is set, the caller must present it (constant time),
    in X-API-Key, or as OpenAI's clients send a key (`Authorization: Bearer KEY`). On a private
    Cloud Run service, such a client sends its identity token in X-Serverless-Authorization."""
    expected = request.app.state.settings.api_key
    if expected is None:
        return
    bearer = authorization[7:] if authorization and authorization[:7].lower() == "bearer " else ""
    presented = x_api_key if x_api_key is not None else bearer
    if not hmac.compare_digest(presented.encode(), expected.get_secret_value().encode()):
        raise Unauthorized()


Service = Annotated[ScreeningService, Depends(get_service)]
Jobs = Annotated[SlideJobs, Depends(get_jobs)]
ApiKey = Depends(require_api_key)


def error_responses(*statuses: int) -> dict:
    """OpenAPI entries for the statuses a route can answer with an ErrorBody."""
    return {status: {"model": ErrorBody} for status in statuses}


def asked_question(question: str | None, max_chars: int) -> str:
    """The question as asked (the default when blank), or 422 when it is too long."""
    question = (question or "").strip() or DEFAULT_QUESTION
    if len(question) > max_chars:
        raise BadQuestion(f"The question is longer than {max_chars} characters.")
    return question

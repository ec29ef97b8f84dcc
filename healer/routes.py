"""The HTTP surface: the health check Cloud Run probes, the screening question, metrics."""

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Header, Request, Response, UploadFile

from healer import metrics
from healer.errors import BadQuestion, NotReady, Unauthorized
from healer.prompts import DEFAULT_QUESTION
from healer.schemas import ErrorBody, Health, Prediction
from healer.service import ScreeningService

router = APIRouter()


def get_service(request: Request) -> ScreeningService:
    service = getattr(request.app.state, "service", None)
    if service is None:
        raise NotReady()
    return service


def require_api_key(
    request: Request, x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None
) -> None:
    """On top of Cloud Run IAM: when API_KEY is set, the caller must present it (constant time)."""
    expected = request.app.state.settings.api_key
    if expected is None:
        return
    if not hmac.compare_digest((x_api_key or "").encode(), expected.get_secret_value().encode()):
        raise Unauthorized()


Service = Annotated[ScreeningService, Depends(get_service)]
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


@router.get("/", response_model=Health, responses=error_responses(503), summary="Health check")
async def health(service: Service) -> Health:
    """200 once the model is loaded and warmed up, with the model it serves."""
    return service.health()


@router.post(
    "/predict",
    response_model=Prediction,
    responses=error_responses(400, 401, 413, 415, 422, 503, 504),
    summary="Ask the screening question about one H&E image",
    dependencies=[ApiKey],
)
async def predict(
    service: Service,
    image_file: Annotated[UploadFile, File(description="PNG, JPEG, TIFF, GIF, BMP or WebP")],
    question: Annotated[str | None, Form(description="Defaults to the colorectal-cancer question")] = None,
    explain: Annotated[bool, Form(description="false: answer and probability only (faster)")] = True,
) -> Prediction:
    """Yes / no / uncertain, P(yes) and a one-sentence explanation. A screening aid, not a diagnosis."""
    question = asked_question(question, service.settings.max_question_chars)
    return await service.predict(await image_file.read(), question, explain)


@router.get("/metrics", include_in_schema=False, dependencies=[ApiKey])
async def prometheus_metrics() -> Response:
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)

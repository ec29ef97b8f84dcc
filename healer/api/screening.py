"""The HTTP surface of screening: the health check Cloud Run probes, the question, metrics."""

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile

from healer import metrics
from healer.api.deps import ApiKey, Service, asked_question, error_responses
from healer.screening.schemas import Health, Prediction

router = APIRouter()


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

"""The HTTP surface of slide screening: upload (202 + job), progress, events, cancel, results.

Slides arrive three ways: a multipart upload (local stores, and slides under Cloud Run's 32 MiB
request cap), a direct upload to Cloud Storage (`POST /slides/uploads`, then `POST /slides` with
its id), or the gs:// URI of a slide already in a bucket. Every route below answers from the
shared store, on any instance.
"""

import asyncio
import json
from typing import Annotated

from fastapi import APIRouter, Path as PathParam, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sse_starlette import EventSourceResponse

from healer.api.deps import ApiKey, Jobs, asked_question, error_responses
from healer.api.sse import event_stream
from healer.api.streamed_form import receive_file
from healer.text.prompts import DISCLAIMER
from healer.slides.jobs import SlideJobs
from healer.slides.plan import plan_slide
from healer.slides.progress import Snapshot, progress
from healer.slides.schemas import (
    SlideInfo, SlideJob, SlideSummary, SlideTile, SlideTiles, SlideUpload, SlideUploadRequest, StartSlide,
)
from healer.slides.scoring import local_copy
from healer.screening.schemas import TriageBands
from healer.slides.state import FINISHED, HEATMAP, OVERLAY, TILES
from healer.slides.uploads import UPLOAD_CHUNK_BYTES, slide_key

router = APIRouter(prefix="/slides", tags=["slides"], dependencies=[ApiKey])
MAX_JSON_BYTES = 64 * 1024
JobId = Annotated[str, PathParam(pattern="^[0-9a-f]{32}$", description="The id POST /slides answered with")]


# The bodies FastAPI would describe for File/Form or Body parameters; the route reads the body itself.
# StartSlide goes in whole, not as a $ref: no parameter names it, so FastAPI would not publish it.
UPLOAD_FORM = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "title": "Body_upload_slide_slides_post", "type": "object", "required": ["slide_file"],
        "properties": {
            "slide_file": {"type": "string", "contentMediaType": "application/octet-stream", "title": "Slide File",
                           "description": "Aperio SVS, tiled TIFF, NDPI, SCN, BIF, Philips TIFF…"},
            "question": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "Question",
                         "description": "Asked of every tile; defaults to the colorectal-cancer question"},
        },
    }},
    "application/json": {"schema": StartSlide.model_json_schema()},
}}}

@router.post(
    "",
    status_code=202,
    response_model=SlideJob,
    responses=error_responses(400, 401, 403, 404, 413, 415, 422, 503),
    summary="Upload a whole slide; it is scored tile by tile in the background",
    openapi_extra=UPLOAD_FORM,
)
async def upload_slide(request: Request, response: Response, jobs: Jobs) -> SlideJob:
    """202 with the job at once: tiles done / total and ETA by polling `GET /slides/{id}` or
    the event stream. Limits: MAX_SLIDE_MB, MAX_SLIDE_TILES tissue tiles. A screening aid.

    multipart/form-data: the slide itself (under Cloud Run's 32 MiB request cap). JSON: a slide
    already in Cloud Storage, by `upload_id` (POST /slides/uploads) or `slide_uri` (gs://).
    The queue place is taken before the body is read (a full queue answers 503 at once), the
    slide streams straight into the store, and a refused upload leaves nothing behind."""
    settings = request.app.state.settings
    with jobs.queue.reserve():
        if request.headers.get("content-type", "").startswith("application/json"):
            start = await _start_request(request)
            question = asked_question(start.question, settings.max_question_chars)
            if start.upload_id is not None:
                job_id, slide, owned = start.upload_id, await jobs.uploads.uploaded_slide(start.upload_id), True
            else:
                await jobs.uploads.outside_slide(start.slide_uri)
                job_id, slide, owned = jobs.store.new_job_id(), start.slide_uri, False
        else:
            job_id, owned = jobs.store.new_job_id(), True
            slide, question = await _receive_slide(request, jobs, job_id)
        try:
            async with local_copy(jobs.store, slide) as path:
                plan = await plan_slide(path, settings)
            snapshot = await jobs.accept(job_id, slide, owned, question, plan)
        except BaseException:
            await asyncio.to_thread(jobs.store.delete_job, job_id)  # an outside gs:// slide is not the job's
            raise
    response.headers["Location"] = _url(job_id)
    return _view(jobs, snapshot)


async def _receive_slide(request: Request, jobs: SlideJobs, job_id: str) -> tuple[str, str]:
    """The multipart form's slide streamed into the store: (its key, the question)."""
    settings = request.app.state.settings
    target: dict = {}

    async def place(filename: str):
        target["key"] = slide_key(job_id, filename)
        target["writer"] = jobs.store.writer(target["key"])
        return await asyncio.to_thread(target["writer"].__enter__)

    try:
        fields = await receive_file(request, "slide_file", place, settings.max_slide_bytes,
                                    "The slide is larger than this service accepts (see MAX_SLIDE_MB).")
        question = asked_question(fields.get("question"), settings.max_question_chars)
    except BaseException as error:
        if "writer" in target:  # nothing is left in the store
            await asyncio.to_thread(target["writer"].__exit__, type(error), error, error.__traceback__)
        await asyncio.to_thread(jobs.store.delete_job, job_id)
        raise
    await asyncio.to_thread(target["writer"].__exit__, None, None, None)
    return target["key"], question


async def _start_request(request: Request) -> StartSlide:
    body = await request.body()
    if len(body) > MAX_JSON_BYTES:
        raise RequestValidationError([{"loc": ("body",), "msg": "body too long", "type": "value_error"}])
    try:
        return StartSlide.model_validate_json(body)
    except ValidationError as error:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False, include_context=False)]
        ) from None


@router.post(
    "/uploads",
    status_code=201,
    response_model=SlideUpload,
    responses=error_responses(400, 401, 409, 413, 415, 422, 503),
    summary="Open a direct upload of a slide to Cloud Storage (past the 32 MiB request cap)",
)
async def open_upload(upload: SlideUploadRequest, request: Request, jobs: Jobs) -> SlideUpload:
    """A resumable upload session for one slide: PUT its bytes to `upload_url` in chunks, then
    start the job with `POST /slides` and `{"upload_id": ...}`. 409 when SLIDE_STORE is not
    Cloud Storage (send a multipart POST /slides instead)."""
    upload_id, url = await jobs.uploads.open(upload.filename, upload.size, request.headers.get("origin"))
    return SlideUpload(upload_id=upload_id, upload_url=url, chunk_bytes=UPLOAD_CHUNK_BYTES)


@router.get("/{job_id}", response_model=SlideJob, responses=error_responses(401, 404, 422), summary="A slide job's state")
async def get_slide(job_id: JobId, jobs: Jobs) -> SlideJob:
    """Status, tiles done / total, ETA; once done, the summary and where the results are."""
    return _view(jobs, await jobs.get(job_id))


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "Server-sent events: `progress` with a SlideJob as data, "
                                    "then one final `done`, `failed` or `cancelled`"},
               **error_responses(401, 404, 422)},
    summary="A slide job's progress as server-sent events",
)
async def slide_events(job_id: JobId, jobs: Jobs) -> EventSourceResponse:
    """One event per change (data: the SlideJob JSON); the stream ends with the final state."""
    await jobs.get(job_id)  # 404 before the stream starts

    async def events():
        async for snapshot in jobs.updates(job_id):
            view = _view(jobs, snapshot)
            yield (view.status if view.status in FINISHED else "progress"), view

    return event_stream(events())  # on SIGTERM it ends at once: the client reconnects elsewhere


@router.delete("/{job_id}", response_model=SlideJob, responses=error_responses(401, 404, 422), summary="Cancel a slide job")
async def cancel_slide(job_id: JobId, jobs: Jobs) -> SlideJob:
    """Cancels a queued or running job, wherever it runs; on a finished job, deletes its results now."""
    return _view(jobs, await jobs.cancel(job_id))


@router.get("/{job_id}/tiles", response_model=SlideTiles, responses=error_responses(401, 404, 409, 422),
            summary="Every scored tile: level-0 position, size, tissue fraction, P(yes)")
async def slide_tiles(job_id: JobId, jobs: Jobs) -> SlideTiles:
    """Coordinates are level-0 pixels of the slide."""
    job, data = await jobs.result(job_id, TILES)
    return SlideTiles(
        id=job.id, width=job.info["width"], height=job.info["height"], threshold=job.threshold,
        triage=TriageBands(rule_out=job.triage[0], rule_in=job.triage[1]) if job.triage else None,
        tiles=[SlideTile(**tile) for tile in json.loads(data)], disclaimer=DISCLAIMER,
    )


@router.get(
    "/{job_id}/heatmap.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "Tile P(yes) over the thumbnail"},
               **error_responses(401, 404, 409, 422)},
    summary="The heatmap over the slide's thumbnail",
)
async def slide_heatmap(
    job_id: JobId, jobs: Jobs,
    legend: Annotated[bool, Query(description="false: the overlay alone, the thumbnail's exact size")] = True,
) -> Response:
    """Viridis from P(yes)=0 to 1; tiles at or above the threshold outlined in white."""
    _, data = await jobs.result(job_id, HEATMAP if legend else OVERLAY)
    return Response(data, media_type="image/png")


def _url(job_id: str) -> str:
    return f"/slides/{job_id}"


def _view(jobs: SlideJobs, snapshot: Snapshot) -> SlideJob:
    job = snapshot.job
    done = job.status == "done"
    return SlideJob(
        id=job.id, status=job.status, question=job.question, slide=SlideInfo(**job.info),
        progress=progress(snapshot), summary=SlideSummary(**job.summary) if job.summary else None,
        error=job.error, heatmap_url=f"{_url(job.id)}/heatmap.png" if done else None,
        tiles_url=f"{_url(job.id)}/tiles" if done else None,
        expires_in_s=jobs.expires_in_s(job), model=jobs.model, disclaimer=DISCLAIMER,
    )

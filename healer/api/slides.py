"""The HTTP surface of slide screening: upload (202 + job), progress, events, cancel, results."""

import asyncio
from pathlib import Path, PurePath
from typing import Annotated

from fastapi import APIRouter, Path as PathParam, Query, Request, Response
from fastapi.responses import StreamingResponse

from healer.api.deps import ApiKey, Jobs, asked_question, error_responses
from healer.api.streamed_form import receive_file
from healer.errors import ResultsNotReady, SlideNotFound
from healer.screening.prompts import DISCLAIMER
from healer.slides.jobs import FINISHED, Job, SlideJobs
from healer.slides.plan import plan_slide
from healer.slides.schemas import SlideJob, SlideTile, SlideTiles
from healer.slides.wsi import SUFFIXES

router = APIRouter(prefix="/slides", tags=["slides"], dependencies=[ApiKey])
JobId = Annotated[str, PathParam(pattern="^[0-9a-f]{32}$", description="The id POST /slides answered with")]


# The form FastAPI would describe for File/Form parameters; the route reads the body itself.
UPLOAD_FORM = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "title": "Body_upload_slide_slides_post", "type": "object", "required": ["slide_file"],
    "properties": {
        "slide_file": {"type": "string", "contentMediaType": "application/octet-stream", "title": "Slide File",
                       "description": "Aperio SVS, tiled TIFF, NDPI, SCN, BIF, Philips TIFF…"},
        "question": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "Question",
                     "description": "Asked of every tile; defaults to the colorectal-cancer question"},
    },
}}}}}


@router.post(
    "",
    status_code=202,
    response_model=SlideJob,
    responses=error_responses(400, 401, 413, 415, 422, 503),
    summary="Upload a whole slide; it is scored tile by tile in the background",
    openapi_extra=UPLOAD_FORM,
)
async def upload_slide(request: Request, response: Response, jobs: Jobs) -> SlideJob:
    """202 with the job at once: tiles done / total and ETA by polling `GET /slides/{id}` or
    the event stream. Limits: MAX_SLIDE_MB, MAX_SLIDE_TILES tissue tiles. A screening aid.

    The queue place is taken before the body is read (a full queue answers 503 at once), the
    slide streams straight into the job's directory, and a refused or failed upload leaves
    nothing behind."""
    settings = request.app.state.settings
    with jobs.reserve():
        job_id = jobs.store.new_job()
        path = None

        def place(filename: str) -> Path:
            nonlocal path
            suffix = PurePath(filename).suffix.lower()
            path = jobs.store.slide_path(job_id, suffix if suffix in SUFFIXES else "")
            return path

        try:
            fields = await receive_file(request, "slide_file", place, settings.max_slide_bytes,
                                        "The slide is larger than this service accepts (see MAX_SLIDE_MB).")
            question = asked_question(fields.get("question"), settings.max_question_chars)
            plan = await plan_slide(path, settings)
            job = jobs.accept(job_id, path, question, plan)
        except BaseException:
            jobs.store.delete(job_id)
            raise
    response.headers["Location"] = _url(job)
    return _view(jobs, job)


@router.get("/{job_id}", response_model=SlideJob, responses=error_responses(401, 404, 422), summary="A slide job's state")
async def get_slide(job_id: JobId, jobs: Jobs) -> SlideJob:
    """Status, tiles done / total, ETA; once done, the summary and where the results are."""
    return _view(jobs, jobs.get(job_id))


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "Server-sent events: `progress` with a SlideJob as data, "
                                    "then one final `done`, `failed` or `cancelled`"},
               **error_responses(401, 404, 422)},
    summary="A slide job's progress as server-sent events",
)
async def slide_events(job_id: JobId, jobs: Jobs) -> StreamingResponse:
    """One event per change (data: the SlideJob JSON); the stream ends with the final state."""
    job = jobs.get(job_id)

    async def stream():
        async for changed in jobs.updates(job):
            if changed is None:
                yield ": keep-alive\n\n"
                continue
            view = _view(jobs, changed)
            name = view.status if view.status in FINISHED else "progress"
            yield f"event: {name}\ndata: {view.model_dump_json()}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"X-Accel-Buffering": "no"})


@router.delete("/{job_id}", response_model=SlideJob, responses=error_responses(401, 404, 422), summary="Cancel a slide job")
async def cancel_slide(job_id: JobId, jobs: Jobs) -> SlideJob:
    """Cancels a queued or running job; on a finished job, deletes its results now."""
    job = await jobs.cancel(job_id)
    return _view(jobs, job)


@router.get("/{job_id}/tiles", response_model=SlideTiles, responses=error_responses(401, 404, 409, 422),
            summary="Every scored tile: level-0 position, size, tissue fraction, P(yes)")
async def slide_tiles(job_id: JobId, jobs: Jobs) -> SlideTiles:
    """Coordinates are level-0 pixels of the slide."""
    job = _done(jobs, job_id)
    try:
        tiles = await asyncio.to_thread(jobs.store.read_tiles, job.id)
    except FileNotFoundError:  # expired between the lookup and the read
        raise SlideNotFound() from None
    return SlideTiles(
        id=job.id, width=job.plan.info.width, height=job.plan.info.height,
        threshold=jobs.settings.slide_threshold, tiles=[SlideTile(**tile) for tile in tiles],
        disclaimer=DISCLAIMER,
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
    job = _done(jobs, job_id)
    try:
        data = await asyncio.to_thread(jobs.store.read_heatmap, job.id, legend)
    except FileNotFoundError:  # expired between the lookup and the read
        raise SlideNotFound() from None
    return Response(data, media_type="image/png")


def _done(jobs: SlideJobs, job_id: str) -> Job:
    job = jobs.get(job_id)
    if job.status != "done":
        raise ResultsNotReady()
    return job


def _url(job: Job) -> str:
    return f"/slides/{job.id}"


def _view(jobs: SlideJobs, job: Job) -> SlideJob:
    done = job.status == "done"
    return SlideJob(
        id=job.id, status=job.status, question=job.question, slide=job.plan.info,
        progress=jobs.progress(job), summary=job.summary, error=job.error,
        heatmap_url=f"{_url(job)}/heatmap.png" if done else None,
        tiles_url=f"{_url(job)}/tiles" if done else None,
        expires_in_s=jobs.expires_in_s(job), model=jobs.model, disclaimer=DISCLAIMER,
    )

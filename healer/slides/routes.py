"""The HTTP surface of slide screening: upload (202 + job), progress, events, cancel, results."""

import asyncio
import shutil
from pathlib import Path, PurePath
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Path as PathParam, Query, Request, Response, UploadFile
from fastapi.responses import StreamingResponse

from healer.errors import NotReady, ResultsNotReady, SlideNotFound, TooLarge
from healer.routes import ApiKey, asked_question, error_responses
from healer.schemas import SlideJob, SlideTiles
from healer.slides.jobs import SlideJobs
from healer.slides.plan import plan_slide
from healer.slides.wsi import SUFFIXES

router = APIRouter(prefix="/slides", tags=["slides"], dependencies=[ApiKey])
COPY_CHUNK = 1024 * 1024


def get_jobs(request: Request) -> SlideJobs:
    jobs = getattr(request.app.state, "slide_jobs", None)
    if jobs is None:
        raise NotReady()
    return jobs


Jobs = Annotated[SlideJobs, Depends(get_jobs)]
JobId = Annotated[str, PathParam(pattern="^[0-9a-f]{32}$", description="The id POST /slides answered with")]


@router.post(
    "",
    status_code=202,
    response_model=SlideJob,
    responses=error_responses(400, 401, 413, 415, 422, 503),
    summary="Upload a whole slide; it is scored tile by tile in the background",
)
async def upload_slide(
    request: Request,
    response: Response,
    jobs: Jobs,
    slide_file: Annotated[UploadFile, File(description="Aperio SVS, tiled TIFF, NDPI, SCN, BIF, Philips TIFF…")],
    question: Annotated[str | None, Form(description="Asked of every tile; defaults to the colorectal-cancer question")] = None,
) -> SlideJob:
    """202 with the job at once: tiles done / total and ETA by polling `GET /slides/{id}` or
    the event stream. Limits: MAX_SLIDE_MB, MAX_SLIDE_TILES tissue tiles. A screening aid."""
    settings = request.app.state.settings
    question = asked_question(question, settings.max_question_chars)
    jobs.check_room()
    job_id, directory = jobs.new_directory()
    suffix = PurePath(slide_file.filename or "").suffix.lower()
    path = directory / ("slide" + (suffix if suffix in SUFFIXES else ""))
    try:
        await asyncio.to_thread(_save, slide_file, path, settings.max_slide_bytes)
        plan = await asyncio.to_thread(plan_slide, path, settings)
        job = jobs.accept(job_id, directory, path, question, plan)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    response.headers["Location"] = f"/slides/{job.id}"
    return jobs.view(job)


def _save(upload: UploadFile, path: Path, max_bytes: int) -> None:
    """Copies the spooled upload to the job's file a megabyte at a time."""
    written = 0
    upload.file.seek(0)
    with open(path, "wb") as out:
        while chunk := upload.file.read(COPY_CHUNK):
            written += len(chunk)
            if written > max_bytes:
                raise TooLarge("The slide is larger than this service accepts (see MAX_SLIDE_MB).")
            out.write(chunk)


@router.get("/{job_id}", response_model=SlideJob, responses=error_responses(401, 404, 422), summary="A slide job's state")
async def get_slide(job_id: JobId, jobs: Jobs) -> SlideJob:
    """Status, tiles done / total, ETA; once done, the summary and where the results are."""
    return jobs.view(jobs.get(job_id))


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
        async for view in jobs.updates(job):
            if view is None:
                yield ": keep-alive\n\n"
                continue
            name = view.status if view.status in ("done", "failed", "cancelled") else "progress"
            yield f"event: {name}\ndata: {view.model_dump_json()}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"X-Accel-Buffering": "no"})


@router.delete("/{job_id}", response_model=SlideJob, responses=error_responses(401, 404, 422), summary="Cancel a slide job")
async def cancel_slide(job_id: JobId, jobs: Jobs) -> SlideJob:
    """Cancels a queued or running job; on a finished job, deletes its results now."""
    job = await jobs.cancel(job_id)
    return jobs.view(job)


@router.get("/{job_id}/tiles", response_model=SlideTiles, responses=error_responses(401, 404, 409, 422),
            summary="Every scored tile: level-0 position, size, tissue fraction, P(yes)")
async def slide_tiles(job_id: JobId, jobs: Jobs) -> SlideTiles:
    """Coordinates are level-0 pixels of the slide."""
    job = _done(jobs, job_id)
    try:
        return await asyncio.to_thread(jobs.tiles, job)
    except FileNotFoundError:
        raise SlideNotFound() from None


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
        data = await asyncio.to_thread(jobs.heatmap_path(job, legend).read_bytes)
    except FileNotFoundError:  # expired between the lookup and the read
        raise SlideNotFound() from None
    return Response(data, media_type="image/png")


def _done(jobs: SlideJobs, job_id: JobId):
    job = jobs.get(job_id)
    if job.status != "done":
        raise ResultsNotReady()
    return job

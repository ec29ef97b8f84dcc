"""How a job's state moves in the store: by compare-and-swap, from any instance or worker task,
so two writers never overwrite each other's change (healer.slides.state draws the moves)."""

import asyncio
import time

from healer.errors import SlideNotFound
from healer.slides.state import FINISHED, STATE, JobState, key
from healer.slides.store import Change, Store


async def read_job(store: Store, job_id: str) -> JobState:
    try:
        return JobState.of(await asyncio.to_thread(store.read_json, key(job_id, STATE)))
    except FileNotFoundError:
        raise SlideNotFound() from None


async def change_job(store: Store, job_id: str, change: Change) -> dict | None:
    return await asyncio.to_thread(store.update, key(job_id, STATE), change)


async def finish_job(store: Store, job_id: str, status: str, error: str | None) -> None:
    """Moves an unfinished job to `status` (no-op on a finished one); deletes its own slide (an
    outside gs:// slide is never touched)."""
    def finished(now: dict | None) -> dict | None:
        if now is None or now["status"] in FINISHED:
            return None
        return {**now, "status": status, "error": error, "finished": time.time()}

    written = await change_job(store, job_id, finished)
    if written is not None and written["owned_slide"]:
        await asyncio.to_thread(store.delete, written["slide"])

"""Where a job's slide comes from, before the job exists: the key it is stored under, a direct
upload to Cloud Storage (past Cloud Run's 32 MiB request cap), or a gs:// slide already in a
bucket. Every limit is answered before a byte of the slide is read."""

import asyncio
import logging
from pathlib import PurePath

from healer.errors import TooLarge, UnsupportedSlide, UploadNotFound
from healer.logs import job_tag
from healer.slides.state import UPLOAD, key
from healer.slides.store import Store
from healer.slides.wsi import SUFFIXES

log = logging.getLogger(__name__)

UPLOAD_CHUNK_BYTES = 8 * 1024 * 1024  # what a direct upload's client sends per request (256 KiB multiple)
TOO_LARGE = "The slide is larger than this service accepts (see MAX_SLIDE_MB)."


def slide_key(job_id: str, filename: str) -> str:
    suffix = PurePath(filename).suffix.lower()
    return key(job_id, "slide" + (suffix if suffix in SUFFIXES else ""))


class Uploads:
    def __init__(self, store: Store, max_slide_bytes: int):
        self.store, self.max_slide_bytes = store, max_slide_bytes

    async def open(self, filename: str, size: int, origin: str | None) -> tuple[str, str]:
        """(upload id, resumable upload URL) for a slide sent straight to Cloud Storage."""
        if size > self.max_slide_bytes:
            raise TooLarge(TOO_LARGE)
        if PurePath(filename).suffix.lower() not in SUFFIXES:
            raise UnsupportedSlide()
        job_id = self.store.new_job_id()
        slide = slide_key(job_id, filename)
        url = await asyncio.to_thread(self.store.upload_session, slide, size, origin)
        await asyncio.to_thread(self.store.write_json, key(job_id, UPLOAD), {"slide": slide, "size": size})
        log.info("slide %s: direct upload opened, %.1f MB", job_tag(job_id), size / 1e6)
        return job_id, url

    async def uploaded_slide(self, upload_id: str) -> str:
        """The key of a finished direct upload; UploadNotFound while bytes are missing."""
        try:
            upload = await asyncio.to_thread(self.store.read_json, key(upload_id, UPLOAD))
        except FileNotFoundError:
            raise UploadNotFound() from None
        size = await asyncio.to_thread(self.store.size, upload["slide"])
        if size is None or size != upload["size"]:
            raise UploadNotFound()
        return upload["slide"]

    async def outside_slide(self, uri: str) -> None:
        """A gs:// slide the service was asked to read: there, readable, within MAX_SLIDE_MB."""
        size = await asyncio.to_thread(self.store.size, uri)  # SlideNotReadable when forbidden
        if size is None:
            raise UploadNotFound("There is no Cloud Storage object at this URI.")
        if size > self.max_slide_bytes:
            raise TooLarge(TOO_LARGE)

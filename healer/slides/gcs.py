"""The slide store on Cloud Storage (SLIDE_STORE=gs://bucket/prefix), through Google's own client.

Cloud Storage is strongly consistent for reads after writes and for listings, and every object
has a generation: the job's state is changed by compare-and-swap with `if_generation_match`,
so instances and worker tasks never overwrite each other. Uploads past Cloud Run's 32 MiB
request cap go straight to the bucket through a resumable upload session the service opens
(no signing key needed: the session URI itself is the client's permission, for one object).

Slides are read by OpenSlide, which needs a file: through the bucket's Cloud Run volume mount
when SLIDE_STORE_MOUNT names it (read on demand, nothing copied), else downloaded to a
temporary file for the time of the read (on Cloud Run that file is memory).

STORAGE_EMULATOR_HOST (the client's own variable) points it at an emulator in tests.
"""

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from google.api_core import exceptions
from google.cloud import storage

from healer.errors import SlideNotReadable
from healer.slides.store import Change, Store

UPLOAD_CHUNK = 8 * 1024 * 1024  # the streamed writer's part size (a multiple of 256 KiB)


def split_uri(uri: str) -> tuple[str, str]:
    """gs://bucket/some/name → (bucket, some/name)."""
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    return bucket, name


def client() -> storage.Client:
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project="healer-emulator", credentials=AnonymousCredentials())
    return storage.Client()


class GcsStore(Store):
    def __init__(self, url: str, mount: Path | None = None):
        self.url = url.rstrip("/")
        bucket, prefix = split_uri(self.url)
        self._client = client()
        self._bucket = self._client.bucket(bucket)
        self._prefix = f"{prefix}/" if prefix else ""
        self._mount = mount

    def _blob(self, key: str) -> storage.Blob:
        return self._bucket.blob(self._prefix + key)

    def write(self, key: str, data: bytes) -> None:
        self._blob(key).upload_from_string(data)

    def read(self, key: str) -> bytes:
        try:
            return self._blob(key).download_as_bytes()
        except exceptions.NotFound:
            raise FileNotFoundError(key) from None

    def delete(self, key: str) -> None:
        try:
            self._blob(key).delete()
        except exceptions.NotFound:
            pass

    def update(self, key: str, change: Change) -> dict | None:
        while True:
            blob = self._blob(key)
            try:
                now, generation = json.loads(blob.download_as_bytes()), blob.generation
            except exceptions.NotFound:
                now, generation = None, 0  # 0: succeed only if nobody created it meanwhile
            new = change(now)
            if new is None:
                return None
            try:
                blob.upload_from_string(json.dumps(new, separators=(",", ":")), content_type="application/json",
                                        if_generation_match=generation)
                return new
            except exceptions.PreconditionFailed:
                continue  # another writer changed it first: decide again on its value

    def keys(self, prefix: str) -> list[str]:
        names = (blob.name for blob in self._client.list_blobs(self._bucket, prefix=self._prefix + prefix))
        return sorted(name.removeprefix(self._prefix) for name in names)

    def job_ids(self) -> dict[str, float]:
        jobs: dict[str, float] = {}
        for blob in self._client.list_blobs(self._bucket, prefix=self._prefix):
            job_id = blob.name.removeprefix(self._prefix).partition("/")[0]
            written = blob.updated.timestamp() if blob.updated else 0.0
            jobs[job_id] = max(jobs.get(job_id, 0.0), written)
        return jobs

    def delete_job(self, job_id: str) -> None:
        for blob in self._client.list_blobs(self._bucket, prefix=f"{self._prefix}{job_id}/"):
            try:
                blob.delete()
            except exceptions.NotFound:
                pass  # another instance deleted it first

    def _ref_blob(self, ref: str) -> storage.Blob:
        if ref.startswith("gs://"):
            bucket, name = split_uri(ref)
            return self._client.bucket(bucket).blob(name)
        return self._blob(ref)

    def size(self, ref: str) -> int | None:
        try:
            blob = self._ref_blob(ref)
            blob.reload()
            return blob.size
        except exceptions.NotFound:
            return None
        except exceptions.Forbidden:
            raise SlideNotReadable() from None

    @contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        blob = self._blob(key)
        with blob.open("wb", chunk_size=UPLOAD_CHUNK, ignore_flush=True) as file:
            yield file  # an exception in the block cancels the upload: no object is made

    @contextmanager
    def local_file(self, ref: str) -> Iterator[Path]:
        if self._mount is not None and not ref.startswith("gs://"):
            path = self._mount / (self._prefix + ref)
            if not path.is_file():
                raise FileNotFoundError(ref)
            yield path
            return
        blob = self._ref_blob(ref)
        with tempfile.TemporaryDirectory(prefix="healer-slide-") as directory:
            path = Path(directory) / ("slide" + Path(blob.name).suffix.lower())
            try:
                blob.download_to_filename(str(path))
            except exceptions.NotFound:
                raise FileNotFoundError(ref) from None
            except exceptions.Forbidden:
                raise SlideNotReadable() from None
            yield path

    def upload_session(self, key: str, size: int, origin: str | None) -> str:
        return self._blob(key).create_resumable_upload_session(
            content_type="application/octet-stream", size=size, origin=origin,
        )

    def close(self) -> None:
        self._client.close()

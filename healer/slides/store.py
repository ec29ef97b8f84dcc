"""Where everything of a slide job lives, shared by every instance and every worker task: the
Store interface and LocalStore, a directory. Cloud Storage's subclass is healer.slides.gcs;
healer.slides.stores picks one from SLIDE_STORE.

Keys are `<job id>/<name>`; the layout of a job is healer.slides.state's business. The job's
state changes only by compare-and-swap (`update`), so two instances, or an instance and a
worker task, never overwrite each other's change.
"""

import fcntl
import json
import os
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from healer.errors import DirectUploadUnavailable, SlideNotReadable

LOCAL_STORE_READS_NO_GS = ("This service keeps slides on its own disk (SLIDE_STORE is a directory), "
                           "so it reads no gs:// object: upload the slide itself, or run it with "
                           "SLIDE_STORE=gs://bucket/prefix.")

Change = Callable[[dict | None], dict | None]  # the value now (None: absent) → the new one (None: leave it)


class Store(ABC):
    url: str  # what SLIDE_STORE says; workers are handed the same

    def new_job_id(self) -> str:
        """A random 128-bit hex id: the only key to a patient's results."""
        return uuid.uuid4().hex

    @abstractmethod
    def write(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def read(self, key: str) -> bytes:
        """Raises FileNotFoundError when the object is not there."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Nothing happens when the object is already gone."""

    @abstractmethod
    def update(self, key: str, change: Change) -> dict | None:
        """Compare-and-swap on a JSON object: `change` is called with the value now (retried when
        another writer got there first); returns the value written, or None when `change` left it."""

    @abstractmethod
    def keys(self, prefix: str) -> list[str]:
        """Every key under `prefix`, sorted."""

    @abstractmethod
    def job_ids(self) -> dict[str, float]:
        """Every job with anything stored, and when its newest object was written (Unix time)."""

    @abstractmethod
    def delete_job(self, job_id: str) -> None: ...

    @abstractmethod
    def size(self, ref: str) -> int | None:
        """Bytes of a key (or of a gs:// URI, on Cloud Storage); None when it is not there."""

    @abstractmethod
    @contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        """A file to stream an upload into; nothing is left at `key` when the block raises."""

    @abstractmethod
    @contextmanager
    def local_file(self, ref: str) -> Iterator[Path]:
        """A path OpenSlide can read for a key (or a gs:// URI): the file itself when the store
        is on this machine, else a copy removed when the block ends."""

    def read_json(self, key: str) -> dict:
        return json.loads(self.read(key))

    def write_json(self, key: str, value: dict) -> None:
        self.write(key, json.dumps(value, separators=(",", ":")).encode())

    def upload_session(self, key: str, size: int, origin: str | None) -> str:
        """A resumable upload URL the client feeds the object to (Cloud Storage only)."""
        raise DirectUploadUnavailable()

    def close(self) -> None:
        pass


class LocalStore(Store):
    """A directory; compare-and-swap under an advisory lock, writes by atomic rename, so several
    processes on one machine (service instances, worker processes) can share it."""

    def __init__(self, root: Path | None):
        self._owns_root = root is None  # a temporary root is deleted with the store
        self.root = Path(root or tempfile.mkdtemp(prefix="healer-slides-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        partial.write_bytes(data)
        os.replace(partial, path)

    def read(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def update(self, key: str, change: Change) -> dict | None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(f".{path.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                now = json.loads(path.read_bytes())
            except FileNotFoundError:
                now = None
            new = change(now)
            if new is not None:
                self.write_json(key, new)
            return new

    def keys(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        directory = base if prefix.endswith("/") else base.parent
        if not directory.is_dir():
            return []
        found = (p.relative_to(self.root).as_posix() for p in directory.rglob("*") if p.is_file())
        return sorted(k for k in found if k.startswith(prefix) and not Path(k).name.startswith("."))

    def job_ids(self) -> dict[str, float]:
        jobs = {}
        for directory in self.root.iterdir():
            if directory.is_dir() and not directory.name.startswith("."):
                times = [p.stat().st_mtime for p in directory.rglob("*")] or [directory.stat().st_mtime]
                jobs[directory.name] = max(times)
        return jobs

    def delete_job(self, job_id: str) -> None:
        shutil.rmtree(self.root / job_id, ignore_errors=True)

    def size(self, ref: str) -> int | None:
        if ref.startswith("gs://"):
            raise SlideNotReadable(LOCAL_STORE_READS_NO_GS)
        try:
            return self._path(ref).stat().st_size
        except FileNotFoundError:
            return None

    @contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(path, "wb") as file:
                yield file
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    @contextmanager
    def local_file(self, ref: str) -> Iterator[Path]:
        path = self._path(ref)
        if not path.exists():  # whatever it is, the reading child judges it, under its deadlines
            raise FileNotFoundError(ref)
        yield path

    def close(self) -> None:
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)


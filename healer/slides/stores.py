"""Which store SLIDE_STORE names; the interface (store.py) knows none of its subclasses.

    SLIDE_STORE=/some/dir          LocalStore (store.py): a directory (the default: a temporary one)
    SLIDE_STORE=gs://bucket/prefix GcsStore (gcs.py): Cloud Storage, strongly consistent
"""

from pathlib import Path

from healer.slides.store import LocalStore, Store


def open_store(url: str | None, mount: Path | None = None) -> Store:
    """SLIDE_STORE as a store: gs://bucket/prefix or a directory (None: a temporary one)."""
    if url and url.startswith("gs://"):
        from healer.slides.gcs import GcsStore  # the Cloud Storage client loads only when used

        return GcsStore(url, mount)
    return LocalStore(Path(url) if url else None)

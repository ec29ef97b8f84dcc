"""Fetching MedGemma from the Hugging Face Hub into a model directory (used by download.py).

One pass: resolve the revision to a commit (model info, with each file's size and hash), check the
token and the disk, download only what the service loads at that commit, verify every file's size
and hash against the Hub's metadata (sha256 for LFS files such as the weight shards, the git blob
sha1 otherwise) and that the processor loads, then record the commit in healer-model.json.
A directory that is already complete for the same model (and pinned revision) is left alone.
Every expected failure becomes a `DownloadError` whose message is one line saying what to do.
The token is passed to the client in memory only: no `login()`, nothing written to disk.
"""

import errno
import hashlib
import json
import shutil
from fnmatch import fnmatch
from pathlib import Path

import httpx2
from huggingface_hub import HfApi, constants, snapshot_download
from huggingface_hub.hf_api import RepoSibling
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from healer.model.model_dir import MARKER_FILE, missing_files, read_source

# Only what the service loads: config, weights, tokenizer, processor, chat template.
ALLOW_PATTERNS = [
    "config.json",
    "generation_config.json",
    "model*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "preprocessor_config.json",
    "processor_config.json",
    "chat_template.json",
    "chat_template.jinja",
]
CONNECT_TIMEOUT_S = 10  # an unreachable Hub fails in seconds, not after the client's retries
DISK_MARGIN = 1.05  # temporary files and metadata on top of the payload
GIB = 1024**3
HASH_CHUNK = 8 * 1024 * 1024


class DownloadError(RuntimeError):
    """An expected failure; the message is one line that says how to fix it."""


def wanted(name: str) -> bool:
    return any(fnmatch(name, pattern) for pattern in ALLOW_PATTERNS)


def download_model(
    model_id: str, revision: str | None, directory: Path, token: str | None,
    endpoint: str | None = None,
) -> tuple[Path, bool]:
    """Download `model_id` into `directory`; (the directory, whether anything was downloaded)."""
    directory = Path(directory)
    revision = revision or None  # MODEL_REVISION="" (an unset build arg) means the default branch
    endpoint = endpoint or constants.ENDPOINT
    if _already_complete(directory, model_id, revision):
        return directory, False
    page = f"{endpoint}/{model_id}"
    try:
        info = HfApi(endpoint=endpoint).model_info(
            model_id, revision=revision, files_metadata=True, token=token or False,
            timeout=CONNECT_TIMEOUT_S,
        )
        if info.gated and not token:
            raise DownloadError(
                f"{model_id} is gated and no token was given: accept its licence at {page}, "
                "then set HF_TOKEN (or MY_HF_TOKEN) to a read token of that account"
            )
        files = [s for s in info.siblings or [] if wanted(s.rfilename)]
        _check_disk(directory, sum(s.size or 0 for s in files))
        snapshot_download(
            repo_id=model_id, revision=info.sha, local_dir=directory, token=token or False,
            allow_patterns=ALLOW_PATTERNS, endpoint=endpoint, etag_timeout=CONNECT_TIMEOUT_S,
        )
    except (OSError, httpx2.HTTPError) as error:  # the Hub's errors are OSErrors too
        raise DownloadError(_explain(error, model_id, revision, token, endpoint, page, directory)) from error
    _verify(directory, files)
    marker = {"id": model_id, "revision": info.sha, "demo": False}
    (directory / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
    return directory, True


def _already_complete(directory: Path, model_id: str, revision: str | None) -> bool:
    if not (directory / MARKER_FILE).is_file() or missing_files(directory):
        return False
    source = read_source(directory, model_id, revision)
    if source.demo or source.id != model_id:
        return False
    return revision is None or source.revision == revision


def _check_disk(directory: Path, needed: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(directory).free
    if needed * DISK_MARGIN > free:
        raise DownloadError(
            f"disk full: the model needs {needed / GIB:.1f} GiB and {directory} has "
            f"{free / GIB:.1f} GiB free; free some space or point MODEL_DIR elsewhere"
        )


def _verify(directory: Path, files: list[RepoSibling]) -> None:
    missing = missing_files(directory)
    if missing:
        raise DownloadError(f"the download in {directory} is incomplete (missing: {', '.join(missing)})")
    for sibling in files:
        _check_file(directory, sibling)
    from transformers import AutoProcessor  # heavy; only once the files are there

    try:
        AutoProcessor.from_pretrained(directory)
    except Exception as error:  # noqa: BLE001
        raise DownloadError(f"the processor in {directory} does not load: {_first_line(error)}") from error


def _check_file(directory: Path, sibling: RepoSibling) -> None:
    """The file's size and hash must be the Hub's; a corrupt file is removed so a rerun fetches it."""
    path = directory / sibling.rfilename
    expected_size = sibling.lfs.size if sibling.lfs else sibling.size
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        problem = f"{size} bytes where the Hub lists {expected_size}"
    elif sibling.lfs:
        digest = _hash(path, hashlib.sha256())
        problem = None if digest == sibling.lfs.sha256 else (
            f"sha256 {digest[:12]}… where the Hub lists {sibling.lfs.sha256[:12]}…")
    elif sibling.blob_id:
        digest = _hash(path, hashlib.sha1(b"blob %d\0" % size))  # git's blob id
        problem = None if digest == sibling.blob_id else (
            f"git blob {digest[:12]}… where the Hub lists {sibling.blob_id[:12]}…")
    else:
        problem = None
    if problem:
        path.unlink()
        raise DownloadError(f"{sibling.rfilename} is corrupt ({problem}); removed it: run download.py again")


def _hash(path: Path, digest) -> str:
    with path.open("rb") as file:
        while chunk := file.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _explain(error: Exception, model_id: str, revision: str | None, token: str | None,
             endpoint: str, page: str, directory: Path) -> str:
    status = getattr(getattr(error, "response", None), "status_code", None)
    cause = error.__cause__ or error.__context__
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return f"disk full while writing {directory}: free some space or point MODEL_DIR elsewhere"
    if isinstance(error, RevisionNotFoundError):
        return f"revision {revision!r} not found in {model_id}: check MODEL_REVISION"
    if isinstance(error, GatedRepoError) or status in (401, 403):
        if not token:
            return (f"{model_id} is gated and no token was given: accept its licence at {page}, "
                    "then set HF_TOKEN (or MY_HF_TOKEN) to a read token of that account")
        return (f"the Hub refused the token ({status}) for {model_id}: the licence must be accepted "
                f"on the model page {page} by the account that owns HF_TOKEN, and the token must be valid")
    if isinstance(error, RepositoryNotFoundError) or status == 404:
        return f"repository {model_id} not found at {endpoint}: check MODEL_ID"
    if isinstance(error, (httpx2.TransportError, LocalEntryNotFoundError)) or isinstance(
        cause, httpx2.TransportError
    ):
        return f"cannot reach the Hub at {endpoint}: check the network (or HF_ENDPOINT)"
    if isinstance(error, HfHubHTTPError):
        return f"the Hub answered {status} for {model_id}: {_first_line(error)}"
    return f"download of {model_id} failed: {type(error).__name__}: {_first_line(error)}"


def _first_line(error: Exception) -> str:
    return next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)

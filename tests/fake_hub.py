"""A local stand-in for the Hugging Face Hub, enough for the real `huggingface_hub` client.

`snapshot_download` (huggingface_hub 1.x/2.x) talks to three endpoints, and so does this server:

    GET  /api/models/{repo}[/revision/{rev}]     model info: sha, gated, siblings with the file
                                                 metadata (size, blobId, lfs.sha256) that
                                                 `model_info(files_metadata=True)` returns
    GET  /api/models/{repo}/tree/{sha}?recursive  the file listing (path, size, oid, lfs.sha256)
    HEAD|GET /{repo}/resolve/{rev}/{file}        the file, with ETag (git blob sha1, or sha256 for
                                                 LFS files), X-Repo-Commit and Content-Length

Errors look like the Hub's: 401/403 with `X-Error-Code: GatedRepo` for a gated repo without the
right token, 404 with `RepoNotFound`/`RevisionNotFound`/`EntryNotFound`. A gated repo's metadata
is public and its files are not, as on the real Hub.

    with FakeHub(files_dir, "google/medgemma-4b-it", token="hf_test") as hub:
        os.environ["HF_ENDPOINT"] = hub.url

`hub.served[path] = other_bytes` serves other bytes than the metadata describes: a file corrupted
in transit or in storage, as a download's size and hash checks must catch.

Run as a script to serve a directory on a fixed port (e.g. for a Docker build on the host network):

    python tests/fake_hub.py DIR REPO_ID --port 8765 --token hf_test
"""

import argparse
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LFS_SUFFIXES = (".safetensors", ".bin", ".model")


class FakeHub:
    def __init__(self, files_dir: Path, repo_id: str, token: str | None = None,
                 host: str = "127.0.0.1", port: int = 0):
        self.files = {
            path.relative_to(files_dir).as_posix(): path.read_bytes()
            for path in sorted(Path(files_dir).rglob("*"))
            if path.is_file() and ".cache" not in path.parts
        }
        self.served = dict(self.files)  # what the file endpoint sends; the metadata describes self.files
        self.repo_id = repo_id
        self.token = token
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Authorization)
        self.server = ThreadingHTTPServer((host, port), _handler_for(self))
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def entry(self, path: str) -> dict:
        data = self.files[path]
        blob_sha1 = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        entry = {"type": "file", "path": path, "size": len(data), "oid": blob_sha1}
        if path.endswith(LFS_SUFFIXES):
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return entry

    def file_downloads(self) -> list[str]:
        return [path for method, path, _ in self.requests if method == "GET" and "/resolve/" in path]


def _sibling(entry: dict) -> dict:
    """A tree entry as the model info's `siblings` (with `blobs=True`) spells it."""
    sibling = {"rfilename": entry["path"], "size": entry["size"], "blobId": entry["oid"]}
    if "lfs" in entry:
        lfs = entry["lfs"]
        sibling["lfs"] = {"sha256": lfs["oid"], "size": lfs["size"], "pointerSize": lfs["pointerSize"]}
    return sibling


def _handler_for(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:
            self._route(send_body=True)

        def do_HEAD(self) -> None:
            self._route(send_body=False)

        def _route(self, send_body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.requests.append((self.command, path, self.headers.get("Authorization")))
            api_prefix = f"/api/models/{hub.repo_id}/"
            resolve_prefix = f"/{hub.repo_id}/resolve/"
            if path == api_prefix.rstrip("/"):
                self._model_info("main")
            elif path.startswith(api_prefix + "revision/"):
                self._model_info(path[len(api_prefix + "revision/"):])
            elif path.startswith(api_prefix + "tree/"):
                self._json([hub.entry(name) for name in hub.files])
            elif path.startswith(resolve_prefix):
                revision, _, name = path[len(resolve_prefix):].partition("/")
                self._file(revision, name, send_body)
            else:
                self._error(404, "RepoNotFound", "Repository not found")

        def _model_info(self, revision: str) -> None:
            if revision not in ("main", COMMIT):
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            siblings = [_sibling(hub.entry(name)) for name in hub.files]
            self._json({
                "id": hub.repo_id, "modelId": hub.repo_id, "sha": COMMIT, "private": False,
                "gated": "manual" if hub.token else False, "siblings": siblings,
            })

        def _file(self, revision: str, name: str, send_body: bool) -> None:
            if revision not in ("main", COMMIT):
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            if hub.token:
                given = self.headers.get("Authorization")
                if given is None:
                    return self._error(401, "GatedRepo", "Access to this model is restricted")
                if given != f"Bearer {hub.token}":
                    return self._error(403, "GatedRepo", "Please accept the licence to access it")
            if name not in hub.files:
                return self._error(404, "EntryNotFound", f"{name} does not exist")
            entry, data = hub.entry(name), hub.served[name]
            etag = entry["lfs"]["oid"] if "lfs" in entry else entry["oid"]
            self.send_response(200)
            self.send_header("ETag", f'"{etag}"')
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if send_body:
                self.wfile.write(data)

        def _json(self, payload) -> None:
            body = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, code: str, message: str) -> None:
            body = json.dumps({"error": message}).encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    return Handler


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Serve a model directory as a fake Hugging Face Hub")
    parser.add_argument("files_dir", type=Path)
    parser.add_argument("repo_id")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token")
    args = parser.parse_args()
    hub = FakeHub(args.files_dir, args.repo_id, args.token, port=args.port)
    print(f"serving {args.repo_id} at {hub.url}", flush=True)
    hub.server.serve_forever()

"""A slide upload's multipart form, read as it streams: the file part goes straight to its
final place, once, a megabyte at a time, and nothing else is kept but the small fields.

FastAPI's `UploadFile` would spool the whole body to a temporary file before the route runs
(so the queue could only be checked after the upload, and the slide was copied a second time).
Here the route takes its queue place first, then reads the body itself.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import BinaryIO

import anyio
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from healer.errors import TooLarge

WRITE_CHUNK = 1024 * 1024
MAX_FIELD_BYTES = 64 * 1024  # any field other than the file (the question is far shorter)


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    field: bytearray = field(default_factory=bytearray)


def _invalid(field_name: str, message: str, kind: str = "value_error") -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", field_name), "msg": message, "type": kind}])


async def receive_file(request: Request, file_field: str, place: Callable[[str], Awaitable[BinaryIO]],
                       max_file_bytes: int, too_large: str) -> dict[str, str]:
    """Writes the part named `file_field` to the file `place(its filename)` opens; returns the
    other fields. 422 when the file is missing or repeated, or the body is not a multipart form;
    TooLarge (with the message `too_large`) past `max_file_bytes`. The caller closes the file,
    and deletes it on error."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise _invalid(file_field, "Field required", "missing")

    events: list[tuple[str, bytes]] = []
    header_field = bytearray()
    header_value = bytearray()

    def on_header_end() -> None:
        events.append(("header", bytes(header_field) + b"\0" + bytes(header_value)))
        header_field.clear(), header_value.clear()

    parser = MultipartParser(boundary, {
        "on_part_begin": lambda: events.append(("begin", b"")),
        "on_header_field": lambda data, start, end: header_field.extend(data[start:end]),
        "on_header_value": lambda data, start, end: header_value.extend(data[start:end]),
        "on_header_end": on_header_end,
        "on_headers_finished": lambda: events.append(("headers", b"")),
        "on_part_data": lambda data, start, end: events.append(("data", bytes(data[start:end]))),
    })
    fields: dict[str, str] = {}
    part, out, written = _Part(), None, 0
    buffer = bytearray()
    async for chunk in request.stream():
        try:
            parser.write(chunk)
        except MultipartParseError:
            raise _invalid("body", "not a well-formed multipart form") from None
        for kind, data in events:
            if kind == "begin":
                part = _Part()
            elif kind == "header":
                name, _, value = data.partition(b"\0")
                if name.lower() == b"content-disposition":
                    _, options = parse_options_header(value)
                    part.name = options.get(b"name", b"").decode("utf-8", "replace")
                    filename = options.get(b"filename")
                    part.filename = None if filename is None else filename.decode("utf-8", "replace")
            elif kind == "headers" and part.name == file_field:
                if out is not None:
                    raise _invalid(file_field, "send one file")
                out = await place(part.filename or "")
            elif kind == "data" and part.name == file_field:
                written += len(data)
                if written > max_file_bytes:
                    raise TooLarge(too_large)
                buffer += data
                if len(buffer) >= WRITE_CHUNK:
                    await anyio.to_thread.run_sync(out.write, bytes(buffer))
                    buffer.clear()
            elif kind == "data":
                part.field += data
                if len(part.field) > MAX_FIELD_BYTES:
                    raise _invalid(part.name or "body", "field too long")
                fields[part.name] = part.field.decode("utf-8", "replace")
        events.clear()
    if parser.state != MultipartState.END:
        raise _invalid("body", "the multipart form ended early")
    if out is None:
        raise _invalid(file_field, "Field required", "missing")
    await anyio.to_thread.run_sync(out.write, bytes(buffer))
    return fields

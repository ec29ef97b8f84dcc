"""Untrusted slide files are read in a child process, every call with a deadline.

OpenSlide is C code reading files anyone can upload: a file can claim 10^10 pixels, loop its
directories, or sit on a FIFO that never answers, and a thread cannot be stopped. So each slide
is read by its own child (`python -m healer.slides.reader`), asked one thing at a time:

    open(path)        OpenSlide opens it; the header's claims are checked (healer.slides.claims)
    thumbnail(side)   the whole slide at most `side` pixels across
    tiles(tiles, px)  a batch of tiles, each `px` square

A call that passes its deadline (SLIDE_OPEN_TIMEOUT_S, SLIDE_READ_TIMEOUT_S) kills the child and
raises SlideReadTimeout; a child that dies (a crash in a decoder, its memory cap) raises
BadSlide; a cancelled caller kills it too, so cancel and shutdown never wait on a read. The child
answers in JSON plus raw RGB bytes, never pickle: the parent trusts nothing it sends.

Today the child runs beside the server; a runner on Cloud Run Jobs can use the same calls.
"""

import asyncio
import ctypes
import json
import logging
import os
import resource
import signal
import struct
import sys
from pathlib import Path

from PIL import Image

from healer.errors import BadSlide, HealerError, SlideReadTimeout, SlideTooLarge, UnsupportedSlide
from healer.slides.claims import SlideHeader

log = logging.getLogger(__name__)

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the child imports healer from here
MAX_REPLY_HEADER = 1 << 20
MAX_IMAGE_SIDE = 4096  # no thumbnail or tile the parent asks for is larger
ERRORS = {cls.__name__: cls for cls in (BadSlide, UnsupportedSlide, SlideTooLarge)}
_frame = struct.Struct(">I")


class SlideReader:
    """`async with SlideReader(open_timeout_s, read_timeout_s, memory_mb) as reader:`"""

    def __init__(self, open_timeout_s: float, read_timeout_s: float, memory_mb: int):
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.memory_mb = memory_mb
        self._process: asyncio.subprocess.Process | None = None

    @classmethod
    def for_settings(cls, settings) -> "SlideReader":
        return cls(settings.slide_open_timeout_s, settings.slide_read_timeout_s, settings.slide_reader_memory_mb)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def __aenter__(self) -> "SlideReader":
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))}
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "healer.slides.reader", str(self.memory_mb),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
            start_new_session=True,  # the server's signals are the server's; it ends the child itself
        )
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def open(self, path: Path, thumbnail_side: int) -> SlideHeader:
        """Raises BadSlide, UnsupportedSlide, SlideTooLarge (from the header), SlideReadTimeout."""
        reply, _ = await self._call({"op": "open", "path": str(path), "thumbnail_side": thumbnail_side},
                                    self.open_timeout_s)
        header = reply["header"]
        return SlideHeader(
            level_dimensions=[tuple(d) for d in header["level_dimensions"]],
            level_downsamples=[float(d) for d in header["level_downsamples"]],
            tile_sizes=[tuple(t) if t else None for t in header["tile_sizes"]],
            mpp=header["mpp"], vendor=header["vendor"],
        )

    async def thumbnail(self, side: int) -> Image.Image:
        _, images = await self._call({"op": "thumbnail", "side": side}, self.read_timeout_s)
        return images[0]

    async def tiles(self, tiles, tile_px: int) -> list[Image.Image]:
        request = {"op": "tiles", "tiles": [[t.x, t.y, t.size] for t in tiles], "tile_px": tile_px}
        _, images = await self._call(request, self.read_timeout_s)
        return images

    async def close(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            process.kill()
        await process.wait()

    async def _call(self, request: dict, timeout_s: float) -> tuple[dict, list[Image.Image]]:
        process = self._process
        if process is None or process.returncode is not None:
            raise BadSlide()
        try:
            process.stdin.write(_encode(request))
            await process.stdin.drain()
            reply, images = await asyncio.wait_for(self._reply(process.stdout), timeout_s)
        except asyncio.TimeoutError:
            log.warning("slide reader %s passed its %.0f s deadline on %s: killed", process.pid, timeout_s, request["op"])
            await self.close()
            raise SlideReadTimeout() from None
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, KeyError, TypeError):
            await self.close()
            log.warning("slide reader %s died or broke protocol on %s (exit %s)", process.pid, request["op"],
                        process.returncode)
            raise BadSlide() from None
        except BaseException:  # cancelled: the read dies with the job or the request
            await self.close()
            raise
        if "error" in reply:
            name, message = reply["error"]
            raise ERRORS.get(name, BadSlide)(message)
        return reply, images

    async def _reply(self, stream: asyncio.StreamReader) -> tuple[dict, list[Image.Image]]:
        (length,) = _frame.unpack(await stream.readexactly(_frame.size))
        if length > MAX_REPLY_HEADER:
            raise ValueError("reply header too long")
        reply = json.loads(await stream.readexactly(length))
        images = []
        for width, height in reply.get("images", []):
            if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
                raise ValueError("image size out of bounds")
            images.append(Image.frombytes("RGB", (width, height), await stream.readexactly(width * height * 3)))
        return reply, images


def _encode(message: dict, payload: bytes = b"") -> bytes:
    body = json.dumps(message).encode()
    return _frame.pack(len(body)) + body + payload


# --- the child ---------------------------------------------------------------------------


def _child(memory_mb: int) -> None:
    from healer.slides.claims import check_header
    from healer.slides.tiling import Tile, read_tile
    from healer.slides.wsi import open_slide, thumbnail

    _die_with_parent()
    # A decoder asked for a decompression bomb fails an allocation here instead of growing the server.
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the replies
    slide = None
    while header := requests.read(_frame.size):
        request = json.loads(requests.read(_frame.unpack(header)[0]))
        try:
            if request["op"] == "open":
                slide = open_slide(Path(request["path"]))
                header_ = _header(slide)
                check_header(header_, request["thumbnail_side"])
                reply, images = {"header": vars(header_)}, []
            elif request["op"] == "thumbnail":
                reply, images = {}, [thumbnail(slide, request["side"])]
            else:
                images = [read_tile(slide, Tile(x, y, size, 0.0), request["tile_px"]) for x, y, size in request["tiles"]]
                reply = {}
        except HealerError as error:
            reply, images = {"error": [type(error).__name__, error.message]}, []
        except MemoryError:
            reply, images = {"error": ["SlideTooLarge", "Reading the slide needs more memory than this service allows."]}, []
        except Exception:  # whatever else a hostile file provokes is a file that cannot be read
            reply, images = {"error": ["BadSlide", BadSlide.message]}, []
        reply["images"] = [image.size for image in images]
        replies.write(_encode(reply, b"".join(image.tobytes() for image in images)))
        replies.flush()


def _header(slide) -> SlideHeader:
    from healer.slides.wsi import stated_mpp

    tile_sizes = []
    for level in range(slide.level_count):
        width = slide.properties.get(f"openslide.level[{level}].tile-width")
        height = slide.properties.get(f"openslide.level[{level}].tile-height")
        tile_sizes.append((int(width), int(height)) if width and height else None)
    return SlideHeader(
        level_dimensions=[tuple(d) for d in slide.level_dimensions],
        level_downsamples=list(slide.level_downsamples), tile_sizes=tile_sizes,
        mpp=stated_mpp(slide), vendor=slide.properties.get("openslide.vendor"),
    )


def _die_with_parent() -> None:
    """A killed server takes its readers with it (Linux; elsewhere the closed pipe ends them)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


if __name__ == "__main__":
    _child(int(sys.argv[1]))

"""A slide file on disk, opened by OpenSlide, with errors a person can act on.

OpenSlide reads Aperio SVS, generic tiled TIFF, Hamamatsu NDPI, Leica SCN, Ventana BIF,
Philips TIFF and more. It cannot tell "not a slide" from "a slide with a broken directory", so
the file's first bytes decide: a TIFF it cannot open is corrupt (400); anything else is not a
slide format at all (415). Pixels are only ever read a region at a time, so memory stays
bounded however large the slide is.
"""

import math
from pathlib import Path

import openslide
from PIL import Image

from healer.errors import BadSlide, UnsupportedSlide

# Extensions OpenSlide may need to pick a reader; anything else is saved without one.
SUFFIXES = {".svs", ".tif", ".tiff", ".ndpi", ".scn", ".bif", ".svslide", ".vms", ".vmu", ".dcm"}
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
CHUNK = 2048  # pixels per side read at once while building a thumbnail


def check_format(path: Path) -> None:
    """The file's first bytes against every single-file format OpenSlide 4 reads, in the server
    itself: anything else is answered 415 at once, without starting a reading child. TIFF
    (SVS, NDPI, SCN, BIF, Philips, Trestle, Ventana, generic), DICOM (`DICM` after a 128-byte
    preamble), Sakura SVSLIDE (SQLite), Zeiss CZI, and the INI key files of VMS, VMU and MIRAX."""
    with open(path, "rb") as file:
        head = file.read(132)
    if not head:
        raise BadSlide("The uploaded file is empty.")
    if not (head[:4] in TIFF_MAGIC or head[128:132] == b"DICM" or head.startswith((b"SQLite format 3\x00", b"ZISRAWFILE"))
            or head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"[")):
        raise UnsupportedSlide()


def open_slide(path: Path) -> openslide.OpenSlide:
    try:
        return openslide.OpenSlide(path)
    except openslide.OpenSlideUnsupportedFormatError:
        with open(path, "rb") as file:
            head = file.read(4)
        if not head:
            raise BadSlide("The uploaded file is empty.") from None
        raise (BadSlide() if head in TIFF_MAGIC else UnsupportedSlide()) from None
    except (openslide.OpenSlideError, OSError, ValueError):
        raise BadSlide() from None


def stated_mpp(slide: openslide.OpenSlide) -> float | None:
    """µm per level-0 pixel from the slide's metadata (OpenSlide normalises every vendor's
    field, and TIFF resolution tags, into openslide.mpp-x/y); None when absent or nonsense."""
    values = []
    for name in (openslide.PROPERTY_NAME_MPP_X, openslide.PROPERTY_NAME_MPP_Y):
        try:
            value = float(slide.properties.get(name, "nan"))
        except ValueError:
            return None
        if not math.isfinite(value) or not 0.01 <= value <= 100:
            return None
        values.append(value)
    return sum(values) / 2


def region(slide: openslide.OpenSlide, location: tuple[int, int], level: int, size: tuple[int, int]) -> Image.Image:
    """RGB; areas outside the scan (transparent in OpenSlide) become white, like glass."""
    try:
        rgba = slide.read_region(location, level, size)
    except (openslide.OpenSlideError, OSError, ValueError):
        raise BadSlide("The slide's pixels could not be read: the file may be truncated or corrupt.") from None
    white = Image.new("RGBA", rgba.size, "white")
    return Image.alpha_composite(white, rgba).convert("RGB")


def thumbnail(slide: openslide.OpenSlide, max_side: int) -> Image.Image:
    """The whole slide at most `max_side` pixels wide or high, read chunk by chunk from the
    best level, so a slide without a pyramid never lands in memory whole."""
    width, height = slide.dimensions
    downsample = max(1.0, max(width, height) / max_side)
    size = (max(1, round(width / downsample)), max(1, round(height / downsample)))
    level = slide.get_best_level_for_downsample(downsample)
    level_width, level_height = slide.level_dimensions[level]
    scale = slide.level_downsamples[level] / downsample  # thumbnail pixels per level pixel
    out = Image.new("RGB", size, "white")
    for top in range(0, level_height, CHUNK):
        for left in range(0, level_width, CHUNK):
            chunk_size = (min(CHUNK, level_width - left), min(CHUNK, level_height - top))
            origin = (round(left * slide.level_downsamples[level]), round(top * slide.level_downsamples[level]))
            x0, y0 = round(left * scale), round(top * scale)
            x1 = min(size[0], round((left + chunk_size[0]) * scale))
            y1 = min(size[1], round((top + chunk_size[1]) * scale))
            if x1 <= x0 or y1 <= y0:
                continue
            piece = region(slide, origin, level, chunk_size)
            out.paste(piece.resize((x1 - x0, y1 - y0), Image.Resampling.BOX), (x0, y0))
    return out

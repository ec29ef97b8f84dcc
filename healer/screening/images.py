"""Uploaded bytes to one RGB picture the model can see, or a clear error.

Only raster formats a pathology lab sends are opened (Pillow would otherwise also try EPS,
which runs Ghostscript, and dozens of exotic decoders). The pixel count is checked from the
header, before any pixel is decoded; a whole-slide file (SVS, NDPI, a pyramidal TIFF…) is
refused from its header too, with a pointer to /slides. Awkward but valid images are
normalised: EXIF orientation applied, first frame of an animation, transparency flattened onto
white (a slide's background), 16-bit and float images rescaled rather than clipped.

Memory stays small: the model sees 896 × 896 pixels (the processor resizes every image to
that), so a large image is decoded straight towards it. A JPEG is decoded at 1/2, 1/4 or 1/8
scale by libjpeg itself (draft mode); anything else is converted a strip of rows at a time and
shrunk by whole factors per axis (`Image.reduce`), never below 896 pixels on either axis, so
the processor's own resize still has the last word. Images up to 1,791 pixels a side (every
ordinary tile) are converted exactly as before, pixel for pixel.
"""

import ctypes
import io
import math
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from healer.errors import BadImage, TooManyPixels, UnsupportedImage, WholeSlideImage

FORMATS = ("PNG", "JPEG", "TIFF", "GIF", "BMP", "WEBP")
MODEL_SIDE = 896  # MedGemma's (SigLIP's) input side
STRIP_ROWS = 256  # input rows converted at a time: a strip is a few MB whatever the image
WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
ORIENTATION = {  # EXIF orientation → the transpose that makes the image upright (as ImageOps.exif_transpose)
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
Image.init()  # register every plugin now: `Image.open(formats=...)` looks them up by name


def _return_large_buffers_to_the_os() -> None:
    """glibc serves a large allocation from its own mapping, but after the first is freed it
    raises that threshold (up to 32 MiB) and keeps later decode buffers in its heaps, per
    thread: decodes on different worker threads then add up (measured: 1,051 MiB for the worst
    images one after another instead of 812). A fixed 1 MiB threshold hands each buffer back."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


_return_large_buffers_to_the_os()


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise BadImage("The uploaded file is empty.")
    try:
        with warnings.catch_warnings():  # the pixel limit below is ours; Pillow's hard limit stays
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError:
        raise _too_many_pixels(max_pixels) from None
    except UnidentifiedImageError:
        raise UnsupportedImage() from None
    except (OSError, SyntaxError, ValueError):
        raise BadImage() from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise _too_many_pixels(max_pixels)
        try:
            if _is_whole_slide(image):
                raise WholeSlideImage()
            image.seek(0)
            if image.format == "JPEG":
                image.draft(None, (MODEL_SIDE, MODEL_SIDE))  # keeps both sides ≥ 896
            image.load()
            orientation = image.getexif().get(0x0112)
            small = _small_rgb(image)
            return small.transpose(ORIENTATION[orientation]) if orientation in ORIENTATION else small
        except Image.DecompressionBombError:
            raise _too_many_pixels(max_pixels) from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError):
            raise BadImage() from None


def _too_many_pixels(max_pixels: int) -> TooManyPixels:
    return TooManyPixels(
        f"The image has more than {max_pixels:,} pixels. Send a tile or a downscaled region."
    )


def _is_whole_slide(image: Image.Image) -> bool:
    """A TIFF that is a slide, from its tags: a vendor's mark, sub-resolutions, or a later
    directory marked reduced-resolution (a pyramid). Only the first few directories are looked at."""
    if image.format != "TIFF":
        return False
    tags = image.tag_v2
    description = str(tags.get(270, ""))
    if description.startswith("Aperio") or "DPUfsImport" in description or "leica.com" in description:
        return True
    if 65420 in tags or 330 in tags:  # Hamamatsu NDPI's file-format tag; SubIFDs (OME pyramids)
        return True
    try:
        for index in range(1, 8):
            image.seek(index)
            if int(image.tag_v2.get(254, 0)) & 1:  # NewSubfileType: reduced-resolution image
                return True
    except (EOFError, OSError, ValueError, TypeError):
        pass
    return False


def _small_rgb(image: Image.Image) -> Image.Image:
    """RGB, each axis shrunk by the whole factor that keeps it at least MODEL_SIDE, a strip at a time."""
    width, height = image.size
    factors = (max(1, width // MODEL_SIDE), max(1, height // MODEL_SIDE))
    value_range = _value_range(image) if image.mode in WIDE_MODES else None
    out = Image.new("RGB", (math.ceil(width / factors[0]), math.ceil(height / factors[1])))
    rows = factors[1] * math.ceil(STRIP_ROWS / factors[1])  # ~STRIP_ROWS input rows, whole output rows
    for top in range(0, height, rows):
        strip = _to_rgb(image.crop((0, top, width, min(height, top + rows))), value_range)
        out.paste(strip.reduce(factors) if factors != (1, 1) else strip, (0, top // factors[1]))
    return out


def _to_rgb(image: Image.Image, value_range: tuple[float, float] | None) -> Image.Image:
    if value_range is not None:
        image = _rescale_to_8bit(image, value_range)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, "white")
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _value_range(image: Image.Image) -> tuple[float, float]:
    """(low, high) of a 16-bit or float image, read a strip at a time (no full-size copy)."""
    low, high = math.inf, -math.inf
    for top in range(0, image.height, STRIP_ROWS):
        values = np.asarray(image.crop((0, top, image.width, min(image.height, top + STRIP_ROWS))))
        if values.size:
            finite = values[np.isfinite(values)] if image.mode == "F" else values
            if finite.size:
                low, high = min(low, float(finite.min())), max(high, float(finite.max()))
    return (0.0, 0.0) if low > high else (low, high)


def _rescale_to_8bit(image: Image.Image, value_range: tuple[float, float]) -> Image.Image:
    """16-bit or float grey to 8-bit by the value range the data can hold, not by clipping:
    float by its own range; integers by 257 when any value passes 255 (exact integer division)."""
    low, high = value_range
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        scaled = np.nan_to_num((values - low) / (high - low or 1.0) * 255.0)
    else:
        values = np.asarray(image).astype(np.int64)
        scaled = values // 257 if max(high, 0) > 255 else values
    return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8))

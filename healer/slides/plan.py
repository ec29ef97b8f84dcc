"""What a slide job will score, decided at upload time so every limit is answered at once:
the slide opens, its resolution, its thumbnail, where the tissue is, and the tiles."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from healer.errors import TooManyTiles
from healer.slides.schemas import SlideInfo
from healer.settings import Settings
from healer.slides.tiling import Tile, tile_size, tissue_tiles
from healer.slides.tissue import tissue_mask
from healer.slides.wsi import open_slide, stated_mpp, thumbnail

MASK_SIDE = 2048  # tissue is found on a thumbnail this large (longest side)
THUMBNAIL_SIDE = 1024  # the heatmap is drawn on one this large


@dataclass(frozen=True)
class Plan:
    info: SlideInfo
    tiles: list[Tile]
    thumbnail: Image.Image | None  # dropped once the heatmap is drawn


def plan_slide(path: Path, settings: Settings) -> Plan:
    """Raises BadSlide / UnsupportedSlide for files OpenSlide cannot read, TooManyTiles."""
    with open_slide(path) as slide:
        mpp = stated_mpp(slide)
        size = tile_size(mpp, settings.slide_mpp, settings.slide_tile_px)
        low = thumbnail(slide, MASK_SIDE)
        info = SlideInfo(
            width=slide.dimensions[0], height=slide.dimensions[1], levels=slide.level_count,
            vendor=slide.properties.get("openslide.vendor"), mpp=mpp,
            tile_mpp=settings.slide_mpp if mpp is not None else None,
            tile_size=size, tile_px=settings.slide_tile_px,
        )
    tiles = tissue_tiles(tissue_mask(np.asarray(low)), (info.width, info.height), size, settings.slide_tissue_fraction)
    if len(tiles) > settings.max_slide_tiles:
        raise TooManyTiles(
            f"The slide has {len(tiles):,} tissue tiles; this service scores at most "
            f"{settings.max_slide_tiles:,} per slide (MAX_SLIDE_TILES). Send a smaller region."
        )
    low.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    return Plan(info, tiles, low)

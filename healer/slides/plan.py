"""What a slide job will score, decided at upload time so every limit is answered at once:
the slide opens and its header's claims pass (in the reading child), its resolution, its
thumbnail, where the tissue is, and the tiles."""

import asyncio
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from healer.errors import TooManyTiles
from healer.settings import Settings
from healer.slides.claims import check_tiling
from healer.slides.reader import SlideReader
from healer.slides.schemas import SlideInfo
from healer.slides.tiling import Tile, tile_size, tissue_tiles
from healer.slides.tissue import tissue_mask
from healer.slides.wsi import check_format

MASK_SIDE = 2048  # tissue is found on a thumbnail this large (longest side)
THUMBNAIL_SIDE = 1024  # the heatmap is drawn on one this large


@dataclass(frozen=True)
class Plan:
    info: SlideInfo
    tiles: list[Tile]
    thumbnail: Image.Image | None  # dropped once the heatmap is drawn


async def plan_slide(path: Path, settings: Settings) -> Plan:
    """Raises BadSlide / UnsupportedSlide for files OpenSlide cannot read, SlideTooLarge for
    headers that claim too much, SlideReadTimeout, TooManyTiles."""
    check_format(path)  # most files that are not slides never cost a reading child
    async with SlideReader.for_settings(settings) as reader:
        header = await reader.open(path, MASK_SIDE)
        size = tile_size(header.mpp, settings.slide_mpp, settings.slide_tile_px)
        check_tiling(header, size, settings.slide_tile_px)
        low = await reader.thumbnail(MASK_SIDE)
    (width, height), levels = header.dimensions, len(header.level_dimensions)
    info = SlideInfo(
        width=width, height=height, levels=levels, vendor=header.vendor, mpp=header.mpp,
        tile_mpp=settings.slide_mpp if header.mpp is not None else None,
        tile_size=size, tile_px=settings.slide_tile_px,
    )
    mask = await asyncio.to_thread(tissue_mask, np.asarray(low))
    tiles = await asyncio.to_thread(tissue_tiles, mask, (width, height), size, settings.slide_tissue_fraction)
    if len(tiles) > settings.max_slide_tiles:
        raise TooManyTiles(
            f"The slide has {len(tiles):,} tissue tiles; this service scores at most "
            f"{settings.max_slide_tiles:,} per slide (MAX_SLIDE_TILES). Send a smaller region."
        )
    low.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    return Plan(info, tiles, low)

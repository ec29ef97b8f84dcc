"""What a slide's header claims, checked before any pixel is read.

A TIFF costs nothing to write and can claim anything: 400,000 × 400,000 pixels with one tile
stored, thousands of levels, 1×1 or 65,536-pixel tiles. Reading such a file is what costs, so
every cost the file implies is estimated from its header (dimensions, levels, tile geometry)
and refused when it passes a fixed bound, in seconds, before the thumbnail or any tile is read.
Real slides sit far inside these bounds: a 40× scan is ~100,000 × 80,000 pixels, 3–10 levels,
tiles of 240–1,024 pixels.
"""

from dataclasses import dataclass

from healer.errors import BadSlide, SlideTooLarge

MAX_LEVEL0_PIXELS = 40_000_000_000  # 200,000 × 200,000: larger than any scanner's output
MAX_LEVELS = 64
MIN_TILE_SIDE = 16  # a TIFF tile smaller than this means millions of decodes per region
MAX_TILE_SIDE = 4096  # a tile larger than this is one huge decode per region (and a bomb's shape)
MAX_THUMBNAIL_READ_PIXELS = 400_000_000  # the level the thumbnail is read from (~4–8 s of JPEG decode)
MAX_THUMBNAIL_READ_TILES = 250_000  # TIFF tiles decoded for that thumbnail
MAX_TILE_DOWNSAMPLE = 4  # a tile read from a level more than 4× finer than needed (16× the pixels)
MAX_GRID_CELLS = 2_000_000  # tile positions weighed for tissue (a 40× slide at 0.5 µm/px: ~30,000)


@dataclass(frozen=True)
class SlideHeader:
    """What OpenSlide reports without reading pixels; sent from the reading child as JSON."""

    level_dimensions: list[tuple[int, int]]
    level_downsamples: list[float]
    tile_sizes: list[tuple[int, int] | None]  # per level, where the format states it
    mpp: float | None
    vendor: str | None

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.level_dimensions[0]


def best_level(downsamples: list[float], downsample: float) -> int:
    """The level OpenSlide reads for `downsample`: the coarsest one not coarser than asked."""
    fitting = [i for i, d in enumerate(downsamples) if d <= downsample * (1 + 1e-9)]
    return max(fitting, key=lambda i: downsamples[i]) if fitting else 0


def check_header(header: SlideHeader, thumbnail_side: int) -> None:
    """Raises BadSlide for impossible geometry, SlideTooLarge for claims that would cost too much."""
    levels = len(header.level_dimensions)
    if levels == 0 or any(w <= 0 or h <= 0 for w, h in header.level_dimensions):
        raise BadSlide("The slide states a level with no pixels: the file is corrupt.")
    if levels > MAX_LEVELS:
        raise SlideTooLarge(f"The slide states {levels:,} levels; this service reads at most {MAX_LEVELS}.")
    width, height = header.dimensions
    if width * height > MAX_LEVEL0_PIXELS:
        raise SlideTooLarge(f"The slide claims {width:,} × {height:,} pixels, more than this service reads.")
    for size in header.tile_sizes:
        if size is not None and not all(MIN_TILE_SIDE <= side <= MAX_TILE_SIDE for side in size):
            raise SlideTooLarge(
                f"The slide is stored in {size[0]:,} × {size[1]:,} pixel tiles; this service reads tiles "
                f"of {MIN_TILE_SIDE}–{MAX_TILE_SIDE:,} pixels a side."
            )
    level = best_level(header.level_downsamples, max(1.0, max(width, height) / thumbnail_side))
    level_width, level_height = header.level_dimensions[level]
    tile = header.tile_sizes[level]
    tiles = -(-level_width // tile[0]) * -(-level_height // tile[1]) if tile else 0
    if level_width * level_height > MAX_THUMBNAIL_READ_PIXELS or tiles > MAX_THUMBNAIL_READ_TILES:
        raise SlideTooLarge(
            f"The slide's smallest usable level is {level_width:,} × {level_height:,} pixels: too costly to "
            "read for an overview. Send a slide with a pyramid (reduced levels), or a smaller region."
        )


def check_tiling(header: SlideHeader, tile_size: int, tile_px: int) -> None:
    """Each tile is `tile_size` level-0 pixels, read from the nearest level and resized to
    `tile_px`: refuse a grid too fine to weigh, and a level far finer than needed (no pyramid
    near SLIDE_MPP)."""
    width, height = header.dimensions
    cells = -(-width // tile_size) * -(-height // tile_size)
    if cells > MAX_GRID_CELLS:
        raise SlideTooLarge(
            f"At its stated resolution the slide is {cells:,} tile positions; this service weighs at most "
            f"{MAX_GRID_CELLS:,}. Check the slide's resolution (mpp) or send a smaller region."
        )
    downsample = max(1.0, tile_size / tile_px)
    level = best_level(header.level_downsamples, downsample)
    read_side = tile_size / header.level_downsamples[level]
    if read_side > MAX_TILE_DOWNSAMPLE * tile_px:
        raise SlideTooLarge(
            f"Each tile would be read as {read_side:,.0f} pixels a side and shrunk to {tile_px}: the slide "
            "has no level near the tile resolution (SLIDE_MPP). Send a slide with a pyramid."
        )

"""Slide files built to hurt a reader: tiny on disk, costly or impossible to read. Written with
tifffile (and by hand where tifffile refuses to write something broken)."""

import io
import struct
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from tests.slide_files import pyramid_tiff, tissue_picture

TILE = np.full((256, 256, 3), 200, np.uint8)


def tiled_tiff(path: Path, width: int, height: int, tile: tuple[int, int], data: bytes,
               compression: int = 1, every_tile: bool = False) -> Path:
    """A classic TIFF, one RGB tiled directory, written by hand: `data` is stored once, as the
    first tile (or shared by every tile entry); the other tiles are absent (offset 0). Small on
    disk whatever it claims."""
    across, down = -(-width // tile[0]), -(-height // tile[1])
    count = max(1, across * down)
    data_at = 8
    bits_at = data_at + len(data)
    offsets_at = bits_at + 6
    counts_at = offsets_at + 4 * count
    ifd_at = counts_at + 4 * count
    offsets = [data_at if every_tile or i == 0 else 0 for i in range(count)]
    counts = [len(data) if every_tile or i == 0 else 0 for i in range(count)]
    entries = [  # tag, type (3 short, 4 long), count, value or offset
        (256, 4, 1, width), (257, 4, 1, height), (258, 3, 3, bits_at), (259, 3, 1, compression),
        (262, 3, 1, 2 if compression == 1 else 6), (277, 3, 1, 3), (284, 3, 1, 1),
        (322, 4, 1, tile[0]), (323, 4, 1, tile[1]),
        (324, 4, count, offsets_at if count > 1 else offsets[0]), (325, 4, count, counts_at if count > 1 else counts[0]),
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, n, value in entries:
        packed = struct.pack("<HI", value, 0)[:4] if kind == 3 and n == 1 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, n) + packed
    ifd += struct.pack("<I", 0)
    path.write_bytes(b"II*\0" + struct.pack("<I", ifd_at) + data + struct.pack("<3H", 8, 8, 8)
                     + struct.pack(f"<{count}I", *offsets) + struct.pack(f"<{count}I", *counts) + ifd)
    return path


def _sparse(path: Path, width: int, height: int, tile: int = 256) -> Path:
    return tiled_tiff(path, width, height, (tile, tile), TILE.tobytes())


def huge_claim(path: Path) -> Path:
    return _sparse(path, 100_000, 100_000)


def thousands_of_levels(path: Path) -> Path:
    with tifffile.TiffWriter(path) as tiff:
        for level in range(2000):
            tiff.write(TILE[:32, :32], tile=(16, 16), subfiletype=1 if level else 0)
    return path


def ifd_loop(path: Path) -> Path:
    """A two-level pyramid whose last directory points back at the first."""
    pyramid_tiff(path, tissue_picture(512, 512, (100, 100, 400, 400)), levels=2)
    with tifffile.TiffFile(path) as tiff:
        first, last = tiff.pages[0].offset, tiff.pages[-1].offset
        entries = tiff.pages[-1].tags.__len__()
    data = bytearray(path.read_bytes())
    next_pointer = last + 2 + entries * 12  # classic TIFF: count, 12-byte entries, next offset
    data[next_pointer:next_pointer + 4] = struct.pack("<I", first)
    path.write_bytes(bytes(data))
    return path


def one_pixel_tiles(path: Path) -> Path:
    with tifffile.TiffWriter(path) as tiff:  # tifffile wants multiples of 16: patch the tags after
        tiff.write(np.full((64, 64, 3), 200, np.uint8), tile=(16, 16))
    return _patch_tile_size(path, 1)


def giant_tiles(path: Path) -> Path:
    return tiled_tiff(path, 131_072, 131_072, (65_536, 65_536), TILE.tobytes())


def _patch_tile_size(path: Path, side: int) -> Path:
    with tifffile.TiffFile(path) as tiff:
        tags = tiff.pages[0].tags
        spots = [(tags[name].valueoffset, tags[name].dtype) for name in ("TileWidth", "TileLength")]
    data = bytearray(path.read_bytes())
    for offset, dtype in spots:
        if dtype == 3:
            data[offset:offset + 2] = struct.pack(f"{'<' if data[:2] == b'II' else '>'}H", side)
        else:
            data[offset:offset + 4] = struct.pack(f"{'<' if data[:2] == b'II' else '>'}I", side)
    path.write_bytes(bytes(data))
    return path


def zero_sized_level(path: Path) -> Path:
    return tiled_tiff(path, 0, 256, (256, 256), TILE.tobytes())


def truncated(path: Path) -> Path:
    pyramid_tiff(path, tissue_picture(1024, 1024, (100, 100, 900, 900)), levels=1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def corrupt_tiles(path: Path) -> Path:
    """A valid directory whose zlib tile data is noise."""
    pyramid_tiff(path, tissue_picture(1024, 1024, (100, 100, 900, 900)), levels=1)
    with tifffile.TiffFile(path) as tiff:
        offsets = tiff.pages[0].dataoffsets
        counts = tiff.pages[0].databytecounts
    data = bytearray(path.read_bytes())
    noise = np.random.default_rng(0)
    for offset, count in zip(offsets, counts):
        data[offset:offset + count] = noise.integers(0, 256, count, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def jpeg_bomb(path: Path) -> Path:
    """JPEG-in-TIFF: one 4,096 px tile of flat colour (a few KB) shared by every tile entry of
    a 60,000 × 60,000 image: gigapixels to decode from kilobytes."""
    buffer = io.BytesIO()
    Image.new("RGB", (4096, 4096), (200, 120, 170)).save(buffer, "JPEG", quality=50)
    return tiled_tiff(path, 60_000, 60_000, (4096, 4096), buffer.getvalue(), compression=7, every_tile=True)


def header_on_garbage(path: Path) -> Path:
    path.write_bytes(b"II*\x00" + np.random.default_rng(1).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    return path


CORPUS = {
    "huge_claim": huge_claim, "thousands_of_levels": thousands_of_levels, "ifd_loop": ifd_loop,
    "one_pixel_tiles": one_pixel_tiles, "giant_tiles": giant_tiles, "zero_sized_level": zero_sized_level,
    "truncated": truncated, "corrupt_tiles": corrupt_tiles, "jpeg_bomb": jpeg_bomb,
    "header_on_garbage": header_on_garbage,
}

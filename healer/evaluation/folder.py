"""A labelled folder of tiles → one scored row per tile, through any `Engine`.

The folder holds one sub-folder per class, as NCT-CRC-HE-100K and CRC-VAL-HE-7K do
(ADI, BACK, DEB, LYM, MUC, MUS, NORM, STR, TUM). Named positive classes get label 1, named
negative classes (by default every other class) label 0; any other class is skipped and reported,
never silently dropped. Each tile is asked the service's question in answer-only mode, in batches;
once the threshold is known, each row gets the yes/no/uncertain decision `/predict` would give it
at that threshold and MIN_ANSWER_MASS.
"""

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from healer.screening import answers
from healer.text.answer_step import Label
from healer.model.engine import Engine, Query
from healer.errors import HealerError
from healer.screening.images import decode_image

# The suffixes of the formats `decode_image` opens; anything else in a class folder is ignored.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp", ".webp"}
CSV_COLUMNS = ("path", "class", "label", "probability", "answer_mass", "answer")


class EvaluationError(Exception):
    """The folder or the class mapping cannot be evaluated; the message says why."""


@dataclass(frozen=True)
class Tile:
    path: Path
    cls: str
    label: int  # 1 positive, 0 negative


@dataclass(frozen=True)
class LabelledFolder:
    root: Path
    tiles: list[Tile]
    positive: list[str]
    negative: list[str]
    skipped: dict[str, int] = field(default_factory=dict)  # class → images not evaluated


@dataclass(frozen=True)
class Scored:
    tile: Tile
    probability: float  # P(yes) at the answer step, float64
    answer_label: Label | None  # the answer step's yes/no; None when the model never answered
    answer_mass: float  # P(yes) + P(no) at the answer step; 0 when there was none

    def answer(self, threshold: float, min_answer_mass: float) -> str:
        """yes / no / uncertain, by /predict's rule at this threshold."""
        return answers.decide("", self.probability, self.answer_label, self.answer_mass,
                              threshold=threshold, min_answer_mass=min_answer_mass).answer


def class_images(root: Path) -> dict[str, list[Path]]:
    """Class name → its image files, sorted, for every sub-folder of `root` that holds images."""
    root = Path(root)
    if not root.is_dir():
        raise EvaluationError(f"{root} is not a folder")
    classes = {
        folder.name: sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        for folder in sorted(root.iterdir())
        if folder.is_dir() and not folder.name.startswith(".")
    }
    classes = {name: images for name, images in classes.items() if images}
    if not classes:
        raise EvaluationError(
            f"{root} has no class sub-folders with images in them; expected one folder per class, "
            f"e.g. {root}/TUM/*.tif and {root}/NORM/*.tif ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return classes


def label_folder(
    root: Path, positive: Sequence[str], negative: Sequence[str] | None = None,
    ignore: Sequence[str] = (),
) -> LabelledFolder:
    """Label every tile of `root`. `negative=None` means every class that is neither positive
    nor ignored. A named class the folder lacks is an error (a typo would change the study)."""
    classes = class_images(root)
    positive, ignore = list(positive), list(ignore)
    if not positive:
        raise EvaluationError("name at least one positive class, e.g. --positive TUM")
    named = positive + list(negative or []) + ignore
    duplicates = sorted({name for name in named if named.count(name) > 1})
    if duplicates:
        raise EvaluationError(f"classes named twice in --positive/--negative/--ignore: {', '.join(duplicates)}")
    missing = [name for name in named if name not in classes]
    if missing:
        raise EvaluationError(
            f"no images for class(es) {', '.join(missing)} in {root}; "
            f"its classes are: {', '.join(classes)}"
        )
    if negative is None:
        negative = [name for name in classes if name not in positive and name not in ignore]
    negative = list(negative)
    if not negative:
        raise EvaluationError(f"no negative class left in {root}: every class is positive or ignored")
    tiles = [Tile(path, name, 1) for name in positive for path in classes[name]]
    tiles += [Tile(path, name, 0) for name in negative for path in classes[name]]
    skipped = {name: len(images) for name, images in classes.items() if name not in positive + negative}
    return LabelledFolder(Path(root), tiles, positive, negative, skipped)


def _batches(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def score_tiles(
    engine: Engine, tiles: Sequence[Tile], question: str, batch_size: int, max_pixels: int,
    progress: bool = True,
) -> tuple[list[Scored], dict[Path, str]]:
    """Scored tiles in order, and the tiles that could not be read (path → reason)."""
    if batch_size < 1:
        raise EvaluationError("--batch-size must be at least 1")
    scored: list[Scored] = []
    unreadable: dict[Path, str] = {}
    with tqdm(total=len(tiles), unit="tile", desc="evaluating", disable=not progress) as bar:
        for batch in _batches(tiles, batch_size):
            readable, queries = [], []
            for tile in batch:
                try:
                    image = decode_image(tile.path.read_bytes(), max_pixels)
                except (HealerError, OSError) as error:
                    unreadable[tile.path] = str(error)
                    continue
                readable.append(tile)
                queries.append(Query(image, question, explain=False))
            generations = engine.generate(queries) if queries else []
            for tile, generation in zip(readable, generations, strict=True):
                scored.append(Scored(tile, generation.p_yes, generation.answer_label, generation.answer_mass))
            bar.update(len(batch))
    return scored, unreadable


def write_csv(
    scored: Sequence[Scored], root: Path, path: Path, threshold: float, min_answer_mass: float,
) -> None:
    """One row per tile; paths relative to the evaluated folder, probability at full precision,
    the answer as /predict would give it at `threshold`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_COLUMNS)
        for row in scored:
            writer.writerow([
                row.tile.path.relative_to(root).as_posix(), row.tile.cls, row.tile.label,
                repr(row.probability), repr(row.answer_mass), row.answer(threshold, min_answer_mass),
            ])

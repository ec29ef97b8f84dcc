"""What fine-tuning learns from: the labelled tiles, split into training and validation, and the
answer each tile should get.

The split keeps every tile of one slide or patient on one side when the file names tell which
that is (a TCGA patient barcode, or the first group of `--group-pattern`); otherwise it is a
split by tile, stratified by label, and the card says so: neighbouring tiles of one slide on both
sides make the validation figures optimistic.
"""

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from healer.evaluation.folder import Tile

# TCGA-<site>-<participant>: the patient, in the file names of tiles cut from TCGA slides.
TCGA_PATIENT = r"(TCGA-[A-Z0-9]{2}-[A-Z0-9]{4})"
MIN_PER_LABEL = 4  # two to train on and two to validate on, for each label


class FinetuneError(Exception):
    """The data cannot be fine-tuned on as asked; the message says why."""


@dataclass(frozen=True)
class Split:
    train: list[Tile]
    validation: list[Tile]
    how: str  # one sentence for the card and the console


def answer_for(tile: Tile) -> str:
    """The model turn taught for a tile: the yes/no word first (its first-token probability is
    what the service reads), then a short explanation naming the class."""
    word = "Yes" if tile.label else "No"
    return f"{word}. The tissue looks like the {tile.cls} class."


def _groups(tiles: Sequence[Tile], pattern: str | None) -> dict[Tile, str] | None:
    regex = re.compile(pattern or TCGA_PATIENT)
    found = {}
    for tile in tiles:
        match = regex.search(tile.path.name)
        if not match:
            if pattern:  # asked for explicitly: a tile it misses is a mistake, not a fallback
                raise FinetuneError(f"--group-pattern {pattern!r} does not match {tile.path.name}")
            return None
        found[tile] = match.group(1) if regex.groups else match.group(0)
    return found


def _check_counts(tiles: Sequence[Tile]) -> None:
    counts = Counter(tile.label for tile in tiles)
    for label, name in ((1, "positive"), (0, "negative")):
        if counts[label] < MIN_PER_LABEL:
            raise FinetuneError(
                f"too few tiles to split: {counts[label]} {name}; fine-tuning needs at least "
                f"{MIN_PER_LABEL} of each label (2 to train on, 2 to validate on)"
            )


def split(tiles: Sequence[Tile], fraction: float, seed: int, group_pattern: str | None = None) -> Split:
    """About `fraction` of the tiles held out for validation, with both labels on both sides."""
    _check_counts(tiles)
    rng = random.Random(seed)
    groups = _groups(tiles, group_pattern)
    if groups is not None:
        names = sorted(set(groups.values()))
        rng.shuffle(names)
        held, size = set(), 0
        for name in names:
            if size >= fraction * len(tiles):
                break
            held.add(name)
            size += sum(group == name for group in groups.values())
        validation = [tile for tile in tiles if groups[tile] in held]
        train = [tile for tile in tiles if groups[tile] not in held]
        for side, name in ((train, "training"), (validation, "validation")):
            if {tile.label for tile in side} != {0, 1}:
                raise FinetuneError(
                    f"split by slide/patient ({len(names)} groups) leaves the {name} set without "
                    "both labels; add tiles from more slides or patients"
                )
        how = (f"by slide/patient from the file names ({len(held)} of {len(names)} groups held out); "
               "no group is on both sides")
        return Split(train, validation, how)
    train, validation = [], []
    for label in (1, 0):
        own = [tile for tile in tiles if tile.label == label]
        rng.shuffle(own)
        held = min(max(2, round(fraction * len(own))), len(own) - 2)
        validation += own[:held]
        train += own[held:]
    how = ("by tile, stratified by label: the file names do not tell slides or patients apart, so "
           "tiles of one slide may be on both sides and validation figures may be optimistic")
    return Split(train, validation, how)


def class_counts(tiles: Sequence[Tile]) -> dict[str, int]:
    return dict(sorted(Counter(tile.cls for tile in tiles).items()))

"""Labelling a class-per-folder tile set and scoring it (healer.evaluation), without a model."""

import csv
from pathlib import Path

import pytest
from PIL import Image

from healer.evaluation.folder import EvaluationError, label_folder, score_tiles, write_csv
from healer.model.fake import FakeEngine

CLASSES = {"ADI": 2, "BACK": 1, "NORM": 3, "STR": 2, "TUM": 4}


@pytest.fixture
def folder(tmp_path) -> Path:
    for name, count in CLASSES.items():
        (tmp_path / name).mkdir()
        for i in range(count):
            Image.new("RGB", (8, 8), (200, 100, 150)).save(tmp_path / name / f"{name}-{i}.tif")
    (tmp_path / "TUM" / "notes.txt").write_text("not a tile")
    (tmp_path / ".thumbnails").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / ".thumbnails" / "x.png")
    return tmp_path


def by_class(labelled) -> dict[str, set[int]]:
    classes: dict[str, set[int]] = {}
    for tile in labelled.tiles:
        classes.setdefault(tile.cls, set()).add(tile.label)
    return classes


def test_by_default_tum_is_positive_and_every_other_class_negative(folder):
    labelled = label_folder(folder, ["TUM"])
    assert by_class(labelled) == {"TUM": {1}, "ADI": {0}, "BACK": {0}, "NORM": {0}, "STR": {0}}
    assert len(labelled.tiles) == sum(CLASSES.values())  # notes.txt and .thumbnails left out
    assert labelled.skipped == {}


def test_named_negatives_leave_the_other_classes_skipped_and_reported(folder):
    labelled = label_folder(folder, ["TUM"], negative=["NORM", "STR"])
    assert by_class(labelled) == {"TUM": {1}, "NORM": {0}, "STR": {0}}
    assert labelled.skipped == {"ADI": 2, "BACK": 1}


def test_ignored_classes_are_skipped_and_reported(folder):
    labelled = label_folder(folder, ["TUM"], ignore=["BACK", "ADI"])
    assert by_class(labelled) == {"TUM": {1}, "NORM": {0}, "STR": {0}}
    assert labelled.skipped == {"ADI": 2, "BACK": 1}


def test_several_positive_classes(folder):
    labelled = label_folder(folder, ["TUM", "STR"], negative=["NORM"])
    assert by_class(labelled) == {"TUM": {1}, "STR": {1}, "NORM": {0}}


@pytest.mark.parametrize(
    ("positive", "negative", "ignore", "message"),
    [
        (["TUMOUR"], None, [], r"no images for class\(es\) TUMOUR .*its classes are: ADI, BACK, NORM, STR, TUM"),
        (["TUM"], ["NORM", "MUC"], [], r"no images for class\(es\) MUC"),
        (["TUM"], None, ["LYM"], r"no images for class\(es\) LYM"),
        (["TUM"], ["TUM", "NORM"], [], "classes named twice.*TUM"),
        (["TUM"], None, ["TUM"], "classes named twice.*TUM"),
        ([], None, [], "at least one positive class"),
        (["TUM"], None, ["ADI", "BACK", "NORM", "STR"], "no negative class left"),
    ],
)
def test_a_mapping_that_does_not_fit_the_folder_is_refused(folder, positive, negative, ignore, message):
    with pytest.raises(EvaluationError, match=message):
        label_folder(folder, positive, negative, ignore)


def test_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(EvaluationError, match="is not a folder"):
        label_folder(tmp_path / "nowhere", ["TUM"])


def test_a_folder_without_class_folders_of_images_is_refused(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "loose.png")  # a tile, but in no class folder
    (tmp_path / "TUM").mkdir()  # a class folder, but empty
    with pytest.raises(EvaluationError, match="no class sub-folders with images"):
        label_folder(tmp_path, ["TUM"])


def test_scoring_asks_in_answer_only_batches_and_skips_unreadable_files(folder, monkeypatch):
    (folder / "NORM" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    labelled = label_folder(folder, ["TUM"], negative=["NORM"])
    engine = FakeEngine(p_yes=0.25, answer_label="no", answer_mass=0.8)
    batches = []
    answer = engine.generate
    monkeypatch.setattr(engine, "generate", lambda queries: batches.append(list(queries)) or answer(queries))

    scored, unreadable = score_tiles(engine, labelled.tiles, "Cancer?", batch_size=3,
                                     max_pixels=10_000, progress=False)

    assert [len(batch) for batch in batches] == [3, 3, 1]  # 8 files in 3s; the broken one dropped
    assert all(not q.explain and q.question == "Cancer?" for batch in batches for q in batch)
    assert list(unreadable) == [folder / "NORM" / "broken.png"]
    assert [row.tile for row in scored] == [t for t in labelled.tiles if t.path.name != "broken.png"]
    assert {(row.probability, row.answer_label, row.answer_mass) for row in scored} == {(0.25, "no", 0.8)}
    assert {row.answer(threshold=0.5, min_answer_mass=0.5) for row in scored} == {"no"}


def test_results_csv_has_one_row_per_tile_with_relative_paths(folder, tmp_path_factory):
    labelled = label_folder(folder, ["TUM"], negative=["NORM"])
    scored, _ = score_tiles(FakeEngine(p_yes=0.125), labelled.tiles, "q", 4, 10_000, progress=False)
    out = tmp_path_factory.mktemp("out") / "results.csv"
    write_csv(scored, folder, out, threshold=0.5, min_answer_mass=0.5)
    with out.open() as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["path", "class", "label", "probability", "answer_mass", "answer"]
    assert [(r["path"], r["class"], r["label"]) for r in rows] == [
        *[(f"TUM/TUM-{i}.tif", "TUM", "1") for i in range(4)],
        *[(f"NORM/NORM-{i}.tif", "NORM", "0") for i in range(3)],
    ]
    # The canned answer is "yes" at P(yes) 0.125: /predict's rule calls that contradiction uncertain.
    assert {(r["probability"], r["answer"]) for r in rows} == {("0.125", "uncertain")}


@pytest.mark.parametrize(
    ("threshold", "min_answer_mass", "answer"),
    [(0.5, 0.5, "no"),           # P(yes) 0.3 under the threshold: the model's no stands
     (0.2, 0.5, "uncertain"),    # a sensitive threshold refers it for review, as /predict would
     (0.5, 0.9, "uncertain")],   # the model put too little probability on answering
)
def test_the_answer_column_is_decided_at_the_reported_threshold(folder, tmp_path, threshold,
                                                                 min_answer_mass, answer):
    labelled = label_folder(folder, ["TUM"], negative=["NORM"])
    engine = FakeEngine(p_yes=0.3, answer_label="no", answer_mass=0.8)
    scored, _ = score_tiles(engine, labelled.tiles, "q", 4, 10_000, progress=False)
    write_csv(scored, folder, tmp_path / "results.csv", threshold, min_answer_mass)
    with (tmp_path / "results.csv").open() as file:
        assert {(r["answer_mass"], r["answer"]) for r in csv.DictReader(file)} == {("0.8", answer)}

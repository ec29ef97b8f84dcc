"""Tissue detection, the tile grid, the summary and the heatmap: pure functions, no model."""

import io

import numpy as np
import pytest
from PIL import Image

from healer.slides.schemas import SlideSummary
from healer.slides import heatmap
from healer.slides.summary import summarise
from healer.slides.tiling import Tile, tile_size, tissue_tiles
from healer.slides.tissue import tissue_mask
from tests.slide_files import tissue_picture


def test_finds_a_known_tissue_region_on_a_synthetic_slide():
    picture = tissue_picture(400, 300, box=(100, 50, 300, 250))
    truth = np.zeros((300, 400), dtype=bool)
    truth[50:250, 100:300] = True

    mask = tissue_mask(picture)

    intersection = (mask & truth).sum()
    union = (mask | truth).sum()
    assert intersection / union > 0.97
    assert not mask[:40].any() and not mask[:, :90].any()  # the glass stays background


def test_finds_no_tissue_on_blank_glass():
    assert not tissue_mask(tissue_picture(400, 300, box=None)).any()
    assert not tissue_mask(np.full((64, 64, 3), 255, dtype=np.uint8)).any()


def test_removes_specks_of_dust_but_keeps_the_tissue():
    picture = tissue_picture(400, 300, box=(100, 50, 300, 250))
    picture[10:13, 10:13] = (120, 40, 90)  # a 3×3 stained speck on the glass
    mask = tissue_mask(picture)
    assert not mask[:20, :20].any()
    assert mask[100:200, 150:250].all()


@pytest.mark.parametrize(
    ("mpp", "target", "tile_px", "expected"),
    [(0.25, 0.5, 512, 1024), (0.499, 0.5, 512, 513), (1.0, 0.5, 512, 256), (None, 0.5, 512, 512)],
)
def test_tile_size_in_level0_pixels_follows_the_slide_resolution(mpp, target, tile_px, expected):
    assert tile_size(mpp, target, tile_px) == expected


def test_keeps_tiles_with_enough_tissue_and_counts_the_part_past_the_edge_as_background():
    mask = np.zeros((100, 100), dtype=bool)  # mask of a 1000×1000 slide: 10 level-0 px per mask px
    mask[0:50, 0:50] = True  # tissue in the top-left quarter
    mask[90:100, 90:100] = True  # and in the bottom-right corner

    tiles = tissue_tiles(mask, (1000, 1000), size=250, min_tissue=0.5)

    assert [(t.x, t.y) for t in tiles] == [(0, 0), (250, 0), (0, 250), (250, 250)]
    assert all(t.size == 250 and t.tissue == 1.0 for t in tiles)
    edge = tissue_tiles(np.ones((10, 10), dtype=bool), (1000, 1000), size=700, min_tissue=0.5)
    assert [(t.x, t.y) for t in edge] == [(0, 0)]  # the other three hang mostly past the edge
    assert tissue_tiles(np.ones((10, 10), dtype=bool), (1000, 1000), size=600, min_tissue=0.5)[1].tissue == 0.6667


def summary_of(probabilities, masses=None, threshold=0.5, top_k=5):
    masses = [0.9] * len(probabilities) if masses is None else masses
    return summarise(probabilities, masses, threshold=threshold, top_k=top_k, min_answer_mass=0.5)


def test_summary_has_the_max_the_top_k_mean_and_the_area_above_the_threshold():
    summary = summary_of([0.1, 0.9, 0.6, 0.5, 0.2], top_k=2)
    assert summary.top_k_mean == pytest.approx(0.75)
    assert summary == SlideSummary(
        tissue_found=True, tiles_scored=5, tiles_unanswered=0, min_answer_mass=0.5, max_probability=0.9, top_k=2,
        top_k_mean=summary.top_k_mean, threshold=0.5, tiles_above_threshold=3, area_fraction_above=0.6,
    )
    assert summary_of([0.3]).top_k == 1


def test_tiles_the_model_did_not_answer_count_in_no_probability_figure():
    # The 0.99 tile put 10 % of its probability on yes or no: its P(yes) is no answer.
    summary = summary_of([0.99, 0.7, 0.2, 0.4], masses=[0.1, 0.8, 0.6, 0.49], top_k=5)
    assert (summary.tiles_scored, summary.tiles_unanswered) == (4, 2)
    assert summary.max_probability == 0.7 and summary.top_k == 2 and summary.top_k_mean == pytest.approx(0.45)
    assert (summary.tiles_above_threshold, summary.area_fraction_above) == (1, 0.5)

    silent = summary_of([0.9, 0.8], masses=[0.0, 0.2])
    assert silent.tissue_found and silent.tiles_unanswered == 2
    assert silent.max_probability is None and silent.top_k_mean is None and silent.area_fraction_above is None


def test_summary_of_a_slide_without_tissue_says_so():
    summary = summary_of([])
    assert summary.tissue_found is False
    assert summary.tiles_scored == 0 and summary.max_probability is None and summary.top_k_mean is None


def test_colour_scale_runs_from_violet_at_zero_to_yellow_at_one():
    assert heatmap.colour(0.0) == (68, 1, 84)
    assert heatmap.colour(1.0) == (253, 231, 37)
    assert heatmap.colour(0.5) == (33, 145, 140)
    assert heatmap.colour(-1) == heatmap.colour(0) and heatmap.colour(2) == heatmap.colour(1)


def test_heatmap_tints_scored_tiles_only_and_adds_a_legend_below():
    thumbnail = Image.new("RGB", (200, 100), "white")
    tiles = [Tile(0, 0, 500, 1.0), Tile(1000, 0, 500, 1.0)]  # slide 2000×1000: thumbnail is 1/10

    tinted = heatmap.overlay(thumbnail, (2000, 1000), tiles, [0.0, 1.0], threshold=0.5)
    pixels = np.asarray(tinted).astype(int)

    assert tinted.size == (200, 100)
    assert pixels[25, 25].tolist() != [255, 255, 255]  # tile 1, tinted violet
    assert pixels[25, 25, 2] > pixels[25, 25, 1]  # violet: more blue than green
    assert pixels[25, 125, 0] > pixels[25, 125, 2]  # tile 2, tinted yellow: more red than blue
    assert pixels[25, 75].tolist() == [255, 255, 255]  # between them: not scored, untouched
    assert pixels[0, 140].tolist() == [255, 255, 255]  # tile 2 is above the threshold: outlined in white

    unanswered = heatmap.overlay(thumbnail, (2000, 1000), tiles, [0.0, 1.0], threshold=0.5, answered=[True, False])
    grey = np.asarray(unanswered).astype(int)[25, 125]
    assert max(grey) - min(grey) <= 2  # tile 2 did not answer: grey, off the colour scale
    assert np.asarray(unanswered)[0, 140].tolist() != [255, 255, 255]  # and never outlined as positive

    framed = heatmap.with_legend(tinted, 0.5, "note")
    assert framed.size == (320, 100 + heatmap.LEGEND_HEIGHT)  # at least wide enough for the scale
    decoded = Image.open(io.BytesIO(heatmap.png(framed)))
    assert decoded.format == "PNG" and decoded.size == framed.size


def test_saturation_is_skimages_hsv_saturation_without_the_float64_hsv_image():
    from skimage.color import rgb2hsv

    from healer.slides.tissue import _saturation

    rgb = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    rgb[:4], rgb[4:8] = 0, 255  # black (max 0) and white rows
    np.testing.assert_allclose(_saturation(rgb), rgb2hsv(rgb)[..., 1], atol=1e-6)

"""The screening metrics against cases worked out by hand (healer.evaluation.metrics: pure numpy, no model)."""

import numpy as np
import pytest

from healer.evaluation import metrics as roc
from healer.evaluate import round_down, show

# Four positives and five negatives; 0.6 is both a positive's and a negative's score (a tie).
LABELS = [1, 1, 1, 1, 0, 0, 0, 0, 0]
SCORES = [0.9, 0.8, 0.6, 0.4, 0.7, 0.6, 0.3, 0.2, 0.1]


def test_confusion_at_a_threshold_counts_ties_with_the_threshold_as_positive():
    # score >= 0.6: positives 0.9, 0.8, 0.6 called (TP 3, FN 1); negatives 0.7, 0.6 called (FP 2).
    counts = roc.confusion(LABELS, SCORES, 0.6)
    assert counts == roc.Confusion(tp=3, fn=1, tn=3, fp=2)
    assert counts.sensitivity == 3 / 4
    assert counts.specificity == 3 / 5
    assert counts.balanced_accuracy == pytest.approx((0.75 + 0.6) / 2)  # 0.675


def test_a_threshold_just_above_a_tie_calls_both_tied_tiles_negative():
    counts = roc.confusion(LABELS, SCORES, 0.6000001)
    assert counts == roc.Confusion(tp=2, fn=2, tn=4, fp=1)


def test_auc_counts_a_tie_as_half_a_correctly_ordered_pair():
    # Negatives below each positive: 0.9 → 5, 0.8 → 5, 0.6 → 3 + ½ (the tied 0.6), 0.4 → 3.
    # (5 + 5 + 3.5 + 3) / (4 × 5) = 16.5 / 20.
    assert roc.roc_auc(LABELS, SCORES) == pytest.approx(0.825, abs=1e-12)


def test_auc_of_perfect_reversed_and_all_tied_scores():
    assert roc.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert roc.roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert roc.roc_auc([1, 0, 1, 0], [0.5] * 4) == 0.5


def test_roc_curve_has_one_point_per_distinct_score_and_its_area_is_the_auc():
    fpr, tpr, thresholds = roc.roc_curve(LABELS, SCORES)
    assert thresholds[0] == np.inf
    assert thresholds[1:].tolist() == [0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1]
    # Worked by hand: at 0.6 three positives and two negatives are called, and so on.
    assert fpr.tolist() == pytest.approx([0, 0, 0, 0.2, 0.4, 0.4, 0.6, 0.8, 1])
    assert tpr.tolist() == pytest.approx([0, 0.25, 0.5, 0.5, 0.75, 1, 1, 1, 1])
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(roc.roc_auc(LABELS, SCORES))


def test_auc_matches_counting_every_pair_on_random_scores_with_ties():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    scores = rng.integers(0, 20, 300) / 20  # many ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert roc.roc_auc(labels, scores) == pytest.approx(pairs / (len(pos) * len(neg)))


@pytest.mark.parametrize(
    ("target", "threshold"),
    [
        (0.25, 0.9),  # one positive of four at or above 0.9
        (0.5, 0.8),
        (0.75, 0.6),  # exactly the target: 3 / 4 at or above 0.6
        (0.76, 0.4),  # just above 3/4 needs every positive
        (0.95, 0.4),
        (1.0, 0.4),
    ],
)
def test_threshold_for_a_target_sensitivity_is_the_highest_that_reaches_it(target, threshold):
    assert roc.threshold_for_sensitivity(LABELS, SCORES, target) == threshold
    assert roc.confusion(LABELS, SCORES, threshold).sensitivity >= target


def test_threshold_rule_when_tied_positives_jump_past_the_target():
    # Positives 0.9, 0.7, 0.7, 0.2: sensitivity goes 0.25 → 0.75 at 0.7; 0.5 is never hit exactly.
    labels, scores = [1, 1, 1, 1, 0, 0], [0.9, 0.7, 0.7, 0.2, 0.8, 0.1]
    assert roc.threshold_for_sensitivity(labels, scores, 0.5) == 0.7


def test_threshold_rule_is_exact_where_floating_point_products_are_not():
    # 0.7 × 10 is 7.000000000000001 in floating point: a ceil() rule would ask for 8 positives.
    labels = [1] * 10 + [0]
    scores = [i / 10 for i in range(10, 0, -1)] + [0.0]
    assert roc.threshold_for_sensitivity(labels, scores, 0.7) == 0.4  # 7 of 10 at or above 0.4


@pytest.mark.parametrize("target", [0, -0.1, 1.01])
def test_target_sensitivity_outside_0_1_is_refused(target):
    with pytest.raises(ValueError, match="target sensitivity"):
        roc.threshold_for_sensitivity(LABELS, SCORES, target)


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([1, 1], [0.2, 0.3], "one positive and one negative"),
        ([0, 0], [0.2, 0.3], "one positive and one negative"),
        ([1, 2], [0.2, 0.3], "0 .negative. or 1"),
        ([1, 0], [0.2], "same length"),
        ([1, 0], [0.2, float("nan")], "finite"),
    ],
)
def test_metrics_refuse_inputs_they_cannot_measure(labels, scores, message):
    with pytest.raises(ValueError, match=message):
        roc.roc_auc(labels, scores)


def _noisy_study(n=200, seed=1):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.clip(0.35 * labels + rng.normal(0.4, 0.2, n), 0, 1)
    return labels, scores


def test_bootstrap_intervals_contain_the_point_estimate_and_have_width():
    labels, scores = _noisy_study()
    summary = roc.summarise(labels, scores, threshold=0.55, resamples=500, seed=0)
    assert set(summary) == {"sensitivity", "specificity", "balanced_accuracy", "roc_auc"}
    for name, estimate in summary.items():
        assert estimate.low <= estimate.value <= estimate.high, name
        assert estimate.high - estimate.low > 0.01, name  # 200 tiles leave real uncertainty
        assert estimate.high - estimate.low < 0.4, name
    assert summary["roc_auc"].value == roc.roc_auc(labels, scores)
    assert summary["sensitivity"].value == roc.confusion(labels, scores, 0.55).sensitivity


def test_bootstrap_is_deterministic_for_a_seed_and_changes_with_it():
    labels, scores = _noisy_study()
    first = roc.bootstrap(labels, scores, roc.roc_auc, resamples=300, seed=7)
    assert roc.bootstrap(labels, scores, roc.roc_auc, resamples=300, seed=7) == first
    assert roc.bootstrap(labels, scores, roc.roc_auc, resamples=300, seed=8) != first


def test_bootstrap_keeps_both_classes_in_every_resample():
    # One positive among many negatives: an unstratified resample would often lose it and fail.
    labels = [1] + [0] * 30
    scores = [0.9] + [i / 40 for i in range(30)]
    assert roc.bootstrap(labels, scores, roc.roc_auc, resamples=200, seed=0) == (1.0, 1.0)


def test_no_bootstrap_gives_the_point_value_as_its_own_interval():
    summary = roc.summarise(LABELS, SCORES, 0.6, resamples=0, seed=0)
    auc = summary["roc_auc"]
    assert auc.value == pytest.approx(0.825) and auc.low == auc.value and auc.high == auc.value
    assert summary["specificity"] == roc.Estimate(0.6, 0.6, 0.6)


@pytest.mark.parametrize(
    ("chosen", "printed"),
    [(0.37129, "0.3712"), (0.3712, "0.3712"), (0.29, "0.2900"), (0.00004, "0.0000"), (1.0, "1.0000")],
)
def test_the_printed_threshold_never_exceeds_the_chosen_one(chosen, printed):
    value = round_down(chosen)
    assert value <= chosen
    assert show(value) == printed

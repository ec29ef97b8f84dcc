"""The triage thresholds' guarantee, checked the way a lab would rely on it: calibrate on one draw of
labelled tiles, then see how the bands do on every tile that could come after.

Each simulation calibrates on many independent draws (seeds) and computes the band's true miss rate
over the whole population of new tiles (the scores' distribution is known here, so exactly). The
guarantee says it exceeds 1 − target in at most 1 − confidence of the draws.
"""

import math
from fractions import Fraction

import numpy as np
import pytest

from healer.evaluation import guarantee
from healer.evaluation.guarantee import NotEnoughCalibration, needed, order_statistic, rule_in_threshold, rule_out_threshold
from healer.evaluation.triage import calibrate, check_counts
from healer.screening.triage import Triage

SEEDS = 2000
SLACK = 4 * math.sqrt(0.05 * 0.95 / SEEDS)  # four standard errors of a 5 % failure rate over SEEDS draws


def failure_rate(threshold_of, n: int, target: float, miss_rate, draw) -> float:
    """The share of calibration draws whose threshold misses more than 1 − target of all positives."""
    failures = 0
    for seed in range(SEEDS):
        scores = draw(np.random.default_rng(seed), n)
        failures += miss_rate(threshold_of(scores)) > 1 - target
    return failures / SEEDS


def continuous_scores(rng, n):
    return rng.random(n) ** 0.3  # P(yes) of positives piled up near 1, as a good model's are


def continuous_miss(threshold):
    return threshold ** (1 / 0.3)  # P(score < t) for the scores above


def bound(scores):
    return rule_out_threshold(scores.tolist(), 0.98, 0.95)[0]


@pytest.mark.parametrize("n", [149, 400, 1000])
def test_the_rule_out_band_misses_more_than_2_percent_of_positives_in_at_most_5_percent_of_calibrations(n):
    rate = failure_rate(bound, n, 0.98, continuous_miss, continuous_scores)
    assert rate <= 0.05 + SLACK


def test_the_bound_is_not_bought_by_ruling_out_nothing():
    """At n = 149 only the lowest positive qualifies, and it fails 0.98^149 = 4.9 % of the time:
    a bound much safer than that would be a bound that rules out less than it could."""
    assert 0.05 - SLACK <= failure_rate(bound, 149, 0.98, continuous_miss, continuous_scores) <= 0.05 + SLACK


def test_the_naive_2nd_percentile_of_the_calibration_positives_fails_the_same_check():
    """What the check is for: the empirical 2nd percentile meets the target on the calibration set
    and misses it on new tiles about half the time."""
    naive = lambda scores: float(np.quantile(scores, 0.02))  # noqa: E731
    assert failure_rate(naive, 400, 0.98, continuous_miss, continuous_scores) > 0.3


# Scores on a coarse grid, as a saturating P(yes) or a rounded one gives: many exact ties, and a
# heavy atom at the lowest value. The miss rate is the service's own band over the whole grid.
GRID = np.round(np.linspace(0, 1, 11), 1)
WEIGHTS = np.array([0.015, 0.004, 0.003, 0.003, 0.005, 0.01, 0.02, 0.04, 0.1, 0.3, 0.5])
WEIGHTS = WEIGHTS / WEIGHTS.sum()


def tied_scores(rng, n):
    return rng.choice(GRID, size=n, p=WEIGHTS)


def tied_miss(threshold):
    triage = Triage(threshold, 1.0)
    return sum(w for score, w in zip(GRID, WEIGHTS) if triage.band(float(score)) == "rule-out")


@pytest.mark.parametrize("n", [149, 600])
def test_with_tied_scores_a_tile_at_the_threshold_is_referred_and_the_guarantee_holds(n):
    assert Triage(0.3, 0.8).band(0.3) == "refer" and Triage(0.3, 0.8).band(0.8) == "refer"
    assert failure_rate(bound, n, 0.98, tied_miss, tied_scores) <= 0.05 + SLACK


def test_the_rule_in_band_rules_in_more_than_5_percent_of_negatives_in_at_most_5_percent_of_calibrations():
    def negatives(rng, n):
        return 1 - continuous_scores(rng, n)  # P(yes) of negatives piled up near 0

    def false_rule_in(threshold):
        return continuous_miss(1 - threshold)  # P(score > t)

    rate = failure_rate(lambda s: rule_in_threshold(s.tolist(), 0.95, 0.95)[0], 300, 0.95, false_rule_in, negatives)
    assert rate <= 0.05 + SLACK


def exact_tail(k: int, n: int, p: Fraction) -> Fraction:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


@pytest.mark.parametrize(("n", "target", "confidence"), [
    (149, 0.98, 0.95), (1000, 0.98, 0.95), (59, 0.95, 0.95), (500, 0.9, 0.99), (30, 0.5, 0.8), (7, 0.75, 0.5),
])
def test_the_rank_is_the_largest_whose_binomial_tail_stays_within_the_risk(n, target, confidence):
    k = order_statistic(n, target, confidence)
    miss, risk = 1 - Fraction(repr(target)), 1 - Fraction(repr(confidence))
    assert exact_tail(k - 1, n, miss) <= risk < exact_tail(k, n, miss)


def test_a_target_of_98_percent_at_95_percent_confidence_needs_149_positives():
    assert needed(0.98, 0.95) == 149 and needed(0.95, 0.95) == 59
    assert rule_out_threshold([0.5] * 148 + [0.01], 0.98, 0.95) == (0.01, 1)
    with pytest.raises(NotEnoughCalibration, match="needs at least 149 positive calibration tiles; this set has 148"):
        rule_out_threshold([0.5] * 148, 0.98, 0.95)


def test_no_positives_is_refused_saying_how_many_are_needed():
    with pytest.raises(NotEnoughCalibration, match="needs at least 149 positive calibration tiles; this set has 0"):
        check_counts(0, 500, 0.98, 0.95, 0.95)
    with pytest.raises(NotEnoughCalibration, match="specificity of at least 0.95 .* needs at least 59 negative"):
        check_counts(500, 58, 0.98, 0.95, 0.95)


def test_a_target_of_1_is_refused_as_impossible_from_any_finite_set():
    assert needed(1.0, 0.95) is None
    with pytest.raises(NotEnoughCalibration, match="cannot be guaranteed from any finite calibration set"):
        rule_out_threshold([0.9] * 10_000, 1.0, 0.95)


def test_all_tied_positives_put_the_threshold_on_them_and_rule_none_of_them_out():
    threshold, _ = rule_out_threshold([0.7] * 300, 0.98, 0.95)
    assert threshold == 0.7 and Triage(threshold, 0.9).band(0.7) == "refer"


def labelled(positives, negatives):
    return [1] * len(positives) + [0] * len(negatives), list(positives) + list(negatives)


def test_printed_thresholds_round_outwards_so_the_guarantee_survives_rounding():
    labels, scores = labelled([0.123456] + [0.9] * 199, [0.876543] * 3 + [0.1] * 97)
    chosen = calibrate(labels, scores, 0.98, 0.95, 0.95)
    assert (chosen.exact_rule_out, chosen.exact_rule_in) == (0.123456, 0.876543)
    assert chosen.triage == Triage(0.1234, 0.8766) and not chosen.crossed


def test_a_rule_out_below_a_ten_thousandth_is_kept_whole_not_rounded_to_zero():
    labels, scores = labelled([2e-7] + [0.9] * 199, [0.1] * 100)
    assert calibrate(labels, scores, 0.98, 0.95, 0.95).triage.rule_out == 2e-7


def test_when_the_bands_would_cross_rule_in_is_raised_to_rule_out():
    labels, scores = labelled([0.8] * 200, [0.2] * 100)  # perfectly separated: rule-in bound 0.2 < rule-out 0.8
    chosen = calibrate(labels, scores, 0.98, 0.95, 0.95)
    assert chosen.crossed and chosen.triage == Triage(0.8, 0.8)
    assert [chosen.triage.band(p) for p in (0.2, 0.8, 0.81)] == ["rule-out", "refer", "rule-in"]


def test_an_unanswered_tile_is_referred_whatever_its_probability():
    assert Triage(0.1, 0.9).band(0.01, answered=False) == "refer"
    assert Triage(0.1, 0.9).band(0.99, answered=False) == "refer"


def test_the_confidence_must_leave_some_risk():
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        guarantee.order_statistic(100, 0.9, 1.0)

"""A threshold with a guaranteed sensitivity (or specificity), from a labelled calibration set.

The method is the distribution-free order-statistic bound, the one behind split-conformal
prediction and the classic nonparametric tolerance limit (Wilks 1941; Bates, Angelopoulos, Lei,
Malik & Jordan 2021, "Distribution-free, risk-controlling prediction sets", with the exact binomial
bound). With the n calibration positives' scores sorted ascending, x(1) ≤ … ≤ x(n), the rule-out
threshold is x(k) for the largest k with

    P(Binomial(n, 1 − target) ≤ k − 1) ≤ 1 − confidence,

and a tile is ruled out when its score is **strictly below** it. Then, over draws of the
calibration set, P(a new positive is ruled out) ≤ 1 − target with probability ≥ confidence,
provided the new positives are exchangeable with the calibration ones. Ties need no care beyond
the strict inequality: if the miss rate P(X < x(k)) exceeds 1 − target, then x(k) lies above the
largest t with P(X < t) ≤ 1 − target, so fewer than k of the n scores are ≤ t while each is with
probability ≥ 1 − target; a binomial tail of at most 1 − confidence. Discrete or tied scores
only make the bound more conservative.

k = 0 (no order statistic qualifies) happens exactly when target^n > 1 − confidence: the set
needs n ≥ log(1 − confidence) / log(target) positives (149 for 0.98 at 95 %).

The specificity side is the mirror image: negatives sorted descending, a tile ruled in when its
score is strictly above the k-th largest.
"""

import math
from collections.abc import Sequence
from fractions import Fraction


class NotEnoughCalibration(ValueError):
    """The calibration set has too few examples of a class for the guarantee asked for."""


def _exact(value: float) -> Fraction:
    """0.98 as 49/50, not as the binary float nearest to it: the bound compares exact tails."""
    return Fraction(repr(value))


def order_statistic(n: int, target: float, confidence: float) -> int:
    """The largest k (1-based) whose k-th smallest of n scores bounds the miss rate by 1 − target
    with `confidence`; 0 when even the smallest does not."""
    _check(target, confidence)
    hit, risk = _exact(target), 1 - _exact(confidence)
    if hit == 1:
        return 0
    # P(Binomial(n, miss) ≤ k − 1) summed in integers over the common denominator q^n: each term
    # C(n, i)·m^i·h^(n−i) follows exactly from the last, so the search is O(k) and never rounds.
    q, h = hit.denominator, hit.numerator
    m = q - h  # the miss rate is m / q
    limit = risk.numerator * q ** n  # total / q^n ≤ risk  ⟺  total · risk.denominator ≤ limit
    k, total, term = 0, 0, h ** n
    while k < n:
        total += term
        if total * risk.denominator > limit:
            break
        term = term * (n - k) * m // ((k + 1) * h)
        k += 1
    return k


def needed(target: float, confidence: float) -> int | None:
    """The fewest calibration examples for which the guarantee exists; None when none does
    (a target of 1: no finite set shows that nothing is ever missed)."""
    _check(target, confidence)
    if target == 1:
        return None
    n = max(1, math.ceil(math.log(1 - confidence) / math.log(target)))
    while order_statistic(n, target, confidence) == 0:  # float logs may land one short
        n += 1
    while n > 1 and order_statistic(n - 1, target, confidence) > 0:
        n -= 1
    return n


def rule_out_threshold(positive_scores: Sequence[float], target: float, confidence: float) -> tuple[float, int]:
    """(threshold, k): scores strictly below the k-th smallest positive score are ruled out, and
    the share of new positives ruled out is ≤ 1 − target with probability ≥ confidence."""
    scores = sorted(positive_scores)
    k = order_statistic(len(scores), target, confidence)
    if k == 0:
        raise NotEnoughCalibration(shortage("positive", len(scores), "sensitivity", target, confidence))
    return scores[k - 1], k


def rule_in_threshold(negative_scores: Sequence[float], target: float, confidence: float) -> tuple[float, int]:
    """(threshold, k): scores strictly above the k-th largest negative score are ruled in, and the
    share of new negatives ruled in is ≤ 1 − target with probability ≥ confidence."""
    scores = sorted(negative_scores, reverse=True)
    k = order_statistic(len(scores), target, confidence)
    if k == 0:
        raise NotEnoughCalibration(shortage("negative", len(scores), "specificity", target, confidence))
    return scores[k - 1], k


def shortage(kind: str, have: int, measure: str, target: float, confidence: float) -> str:
    asked = f"a {measure} of at least {target:g} at {confidence:.0%} confidence"
    n = needed(target, confidence)
    if n is None:
        return (f"{asked} cannot be guaranteed from any finite calibration set (that would need "
                f"every {kind} tile ever seen to be caught); ask for less than 1")
    return f"{asked} needs at least {n} {kind} calibration tiles; this set has {have}"


def _check(target: float, confidence: float) -> None:
    if not 0 < target <= 1:
        raise ValueError("the target must be in (0, 1]")
    if not 0 < confidence < 1:
        raise ValueError("the confidence must be strictly between 0 and 1")

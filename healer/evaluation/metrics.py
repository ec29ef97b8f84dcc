"""Screening metrics from labels (1 = positive) and scores (P(yes)): pure numpy, no model.

A tile is called positive when its score is **at or above** the threshold (`score >= t`), the
same rule `/predict` is to apply with `THRESHOLD`. Ties count half in the AUC (Mann-Whitney), which
equals the area under the ROC curve drawn through every distinct score with straight segments.

Confidence intervals are percentile bootstraps, stratified: positives and negatives are resampled
separately, so every resample keeps the study's class counts and always has both classes. The
threshold stays fixed across resamples: the interval describes the test set's sampling error at
that operating point, not the error of choosing the threshold (choose it on one set, report on
another).
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Confusion:
    tp: int
    fn: int
    tn: int
    fp: int

    @property
    def sensitivity(self) -> float:
        return self.tp / (self.tp + self.fn)

    @property
    def specificity(self) -> float:
        return self.tn / (self.tn + self.fp)

    @property
    def balanced_accuracy(self) -> float:
        return (self.sensitivity + self.specificity) / 2


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float  # percentile bootstrap interval; equal to value when no bootstrap was asked for
    high: float


def _check(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.ndim != 1 or labels.shape != scores.shape:
        raise ValueError("labels and scores must be 1-D and of the same length")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (negative) or 1 (positive)")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite numbers")
    labels = labels.astype(bool)
    if labels.all() or not labels.any():
        raise ValueError("need at least one positive and one negative example")
    return labels, scores


def confusion(labels, scores, threshold: float) -> Confusion:
    labels, scores = _check(labels, scores)
    called = scores >= threshold
    return Confusion(
        tp=int((called & labels).sum()),
        fn=int((~called & labels).sum()),
        tn=int((~called & ~labels).sum()),
        fp=int((called & ~labels).sum()),
    )


def roc_auc(labels, scores) -> float:
    """P(score of a random positive > that of a random negative), ties counting half."""
    labels, scores = _check(labels, scores)
    ranks = _midranks(scores)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    rank_sum = ranks[labels].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


def _midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]  # exclusive
    group_rank = (starts + 1 + ends) / 2  # mean of ranks starts+1 … ends
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(group_rank, ends - starts)
    return ranks


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates, thresholds), one point per distinct score from
    the highest down, after a first point (0, 0) at threshold +inf."""
    labels, scores = _check(labels, scores)
    order = np.argsort(-scores, kind="mergesort")
    ordered, hits = scores[order], labels[order]
    last_of_each_score = np.r_[ordered[1:] != ordered[:-1], True]  # all ties fall together
    tpr = np.cumsum(hits)[last_of_each_score] / hits.sum()
    fpr = np.cumsum(~hits)[last_of_each_score] / (~hits).sum()
    return np.r_[0.0, fpr], np.r_[0.0, tpr], np.r_[np.inf, ordered[last_of_each_score]]


def threshold_for_sensitivity(labels, scores, target: float) -> float:
    """The highest threshold (one of the scores) whose sensitivity is at least `target`."""
    if not 0 < target <= 1:
        raise ValueError("the target sensitivity must be in (0, 1]")
    labels, scores = _check(labels, scores)
    positive_scores = np.sort(scores[labels])[::-1]
    for threshold in np.unique(positive_scores)[::-1]:
        if (positive_scores >= threshold).sum() / len(positive_scores) >= target:
            return float(threshold)
    raise AssertionError("unreachable: the lowest positive score gives sensitivity 1")


def bootstrap(
    labels, scores, statistic: Callable[[np.ndarray, np.ndarray], float],
    resamples: int, seed: int, level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of `statistic(labels, scores)` over stratified resamples."""
    labels, scores = _check(labels, scores)
    rng = np.random.default_rng(seed)
    positives, negatives = np.flatnonzero(labels), np.flatnonzero(~labels)
    values = np.empty(resamples)
    for i in range(resamples):
        rows = np.r_[rng.choice(positives, len(positives)), rng.choice(negatives, len(negatives))]
        values[i] = statistic(labels[rows].astype(int), scores[rows])
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def summarise(labels, scores, threshold: float, resamples: int, seed: int) -> dict[str, Estimate]:
    """Sensitivity, specificity and balanced accuracy at `threshold`, and ROC AUC, each with its
    bootstrap interval (the point value twice when `resamples` is 0)."""
    statistics = {
        "sensitivity": lambda y, s: confusion(y, s, threshold).sensitivity,
        "specificity": lambda y, s: confusion(y, s, threshold).specificity,
        "balanced_accuracy": lambda y, s: confusion(y, s, threshold).balanced_accuracy,
        "roc_auc": roc_auc,
    }
    summary = {}
    for name, statistic in statistics.items():
        value = statistic(labels, scores)
        low, high = bootstrap(labels, scores, statistic, resamples, seed) if resamples else (value, value)
        summary[name] = Estimate(value, low, high)
    return summary

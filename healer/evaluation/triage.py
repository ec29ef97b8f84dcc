"""Triage thresholds from a labelled calibration set, as the service takes them, and what each
band would hold. The bound is healer.evaluation.guarantee's; the bands are healer.screening.triage's.

The printed thresholds are rounded **outwards** to 4 decimals (rule-out down, rule-in up), so every
tile a printed threshold rules out or in is one the exact threshold rules out or in: the guarantee
holds for the printed values. When the two would cross (a model that separates the classes better
than the targets ask), rule-in is raised to rule-out: no tile is referred on P(yes) alone, and
both guarantees still hold, since raising rule-in only rules in fewer tiles.
"""

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from healer.evaluation import guarantee
from healer.screening.triage import BANDS, Triage

DECIMALS = 4
ASSUMPTIONS = (
    "the new tiles are exchangeable with the calibration tiles: the same scanner, stain, site, "
    "tissue selection, question and model (weights, adapter, quantization); the guarantee holds "
    "over draws of the calibration set, for tiles, not for each patient or slide"
)


@dataclass(frozen=True)
class Calibration:
    triage: Triage  # the thresholds as the service takes them
    exact_rule_out: float  # the order statistics themselves
    exact_rule_in: float
    k_out: int  # rule-out is the k_out-th smallest of the positives' scores…
    positives: int
    k_in: int  # …rule-in the k_in-th largest of the negatives'
    negatives: int
    target_sensitivity: float
    target_specificity: float
    confidence: float
    crossed: bool  # rule-in was raised to rule-out


def check_counts(positives: int, negatives: int, sensitivity: float, specificity: float, confidence: float) -> None:
    """NotEnoughCalibration before any tile is scored, when the classes are too small anyway."""
    for count, target, kind, measure in ((positives, sensitivity, "positive", "sensitivity"),
                                          (negatives, specificity, "negative", "specificity")):
        if guarantee.order_statistic(count, target, confidence) == 0:
            raise guarantee.NotEnoughCalibration(guarantee.shortage(kind, count, measure, target, confidence))


def calibrate(labels, scores, sensitivity: float, specificity: float, confidence: float) -> Calibration:
    positives = [s for label, s in zip(labels, scores, strict=True) if label == 1]
    negatives = [s for label, s in zip(labels, scores, strict=True) if label == 0]
    exact_out, k_out = guarantee.rule_out_threshold(positives, sensitivity, confidence)
    exact_in, k_in = guarantee.rule_in_threshold(negatives, specificity, confidence)
    rule_out, rule_in = _rounded(exact_out, ROUND_FLOOR), _rounded(exact_in, ROUND_CEILING)
    crossed = rule_in < rule_out
    return Calibration(Triage(rule_out, max(rule_in, rule_out)), exact_out, exact_in, k_out, len(positives),
                       k_in, len(negatives), sensitivity, specificity, confidence, crossed)


def _rounded(value: float, rounding: str) -> float:
    """`value` to 4 decimals, outwards; the value itself when that would reach 0 or 1 and it does
    not (a P(yes) of 2e-7 rounded down to 0 would rule nothing out)."""
    short = float(Decimal(repr(value)).quantize(Decimal(1).scaleb(-DECIMALS), rounding=rounding))
    return value if short in (0.0, 1.0) and short != value else short


def shares(labels, scores, answered, triage: Triage) -> dict[str, dict[str, float]]:
    """The share of positive, negative and all tiles in each band, as the service would band them."""
    bands = [(label, triage.band(score, ok)) for label, score, ok in zip(labels, scores, answered, strict=True)]
    groups = {"positive": [b for label, b in bands if label == 1], "negative": [b for label, b in bands if label == 0],
              "all": [b for _, b in bands]}
    return {name: {band: group.count(band) / len(group) if group else 0.0 for band in BANDS}
            for name, group in groups.items()}


def show(value: float) -> str:
    short = f"{value:.{DECIMALS}f}"
    return short if float(short) == value else repr(value)


def describe(c: Calibration, where: str) -> list[str]:
    """The thresholds, the guarantee and its assumptions, in words, one line each."""
    t, level = c.triage, f"{c.confidence:.0%}"
    lines = [
        f"triage, calibrated {where} ({c.positives} positive, {c.negatives} negative tiles):",
        f"  rule-out  P(yes) < {show(t.rule_out)}: the {_nth(c.k_out)} lowest positive score ({c.exact_rule_out:.6g}). "
        f"With {level} confidence, at most {1 - c.target_sensitivity:.1%} of positive tiles are ruled out "
        f"(sensitivity >= {c.target_sensitivity:g}).",
        f"  rule-in   P(yes) > {show(t.rule_in)}: the {_nth(c.k_in)} highest negative score ({c.exact_rule_in:.6g}). "
        f"With {level} confidence, at most {1 - c.target_specificity:.1%} of negative tiles are ruled in "
        f"(specificity >= {c.target_specificity:g}).",
        f"  refer     from {show(t.rule_out)} to {show(t.rule_in)}, both included, and every tile the model did not answer.",
    ]
    if c.crossed:
        lines.append(f"  the rule-in bound ({c.exact_rule_in:.6g}) fell below rule-out: rule-in raised to rule-out, "
                     "so only a tile exactly at it, or unanswered, is referred.")
    lines.append(f"assumptions: {ASSUMPTIONS}.")
    return lines


def _nth(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"

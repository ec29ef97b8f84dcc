"""The slide-level numbers, from the tiles' P(yes) and answer mass. Pure.

A tile whose answer mass is below MIN_ANSWER_MASS did not answer: its P(yes) is the ratio of two
small numbers, so it counts in `tiles_unanswered` and in none of the P(yes) figures, and its
triage band is refer. With triage thresholds, the slide's band is its most urgent tile's.
"""

from healer.screening import triage as bands
from healer.screening.schemas import TriageBands
from healer.slides.schemas import SlideSummary


def answered(answer_mass: float, min_answer_mass: float) -> bool:
    return answer_mass >= min_answer_mass


def tile_bands(
    probabilities: list[float], answer_masses: list[float], triage: bands.Triage | None, min_answer_mass: float
) -> list[bands.Band | None]:
    """Each tile's triage band (None for every tile without triage thresholds)."""
    return [triage.band(p, answered(mass, min_answer_mass)) if triage else None
            for p, mass in zip(probabilities, answer_masses, strict=True)]


def summarise(
    probabilities: list[float], answer_masses: list[float], threshold: float, top_k: int, min_answer_mass: float,
    triage: bands.Triage | None = None,
) -> SlideSummary:
    ranked = sorted(
        (p for p, mass in zip(probabilities, answer_masses, strict=True) if answered(mass, min_answer_mass)),
        reverse=True,
    )
    common = dict(
        tissue_found=bool(probabilities), tiles_scored=len(probabilities),
        tiles_unanswered=len(probabilities) - len(ranked), min_answer_mass=min_answer_mass, threshold=threshold,
    )
    if triage is not None:
        found = tile_bands(probabilities, answer_masses, triage, min_answer_mass)
        common.update(triage=bands.worst(found), tiles_per_band=bands.counts(found),
                      triage_thresholds=TriageBands.of(triage))
    if not ranked:
        return SlideSummary(**common, max_probability=None, top_k=0, top_k_mean=None,
                            tiles_above_threshold=0, area_fraction_above=None)
    k = min(top_k, len(ranked))
    above = sum(p >= threshold for p in ranked)
    return SlideSummary(
        **common,
        max_probability=ranked[0],
        top_k=k,
        top_k_mean=sum(ranked[:k]) / k,
        tiles_above_threshold=above,
        area_fraction_above=above / len(ranked),  # tiles are equal squares: a share of answered tissue area
    )

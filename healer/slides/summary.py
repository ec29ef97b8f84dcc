"""The slide-level numbers, from the tiles' P(yes) and answer mass. Pure.

A tile whose answer mass is below MIN_ANSWER_MASS did not answer: its P(yes) is the ratio of two
small numbers, so it counts in `tiles_unanswered` and in none of the P(yes) figures.
"""

from healer.slides.schemas import SlideSummary


def answered(answer_mass: float, min_answer_mass: float) -> bool:
    return answer_mass >= min_answer_mass


def summarise(
    probabilities: list[float], answer_masses: list[float], threshold: float, top_k: int, min_answer_mass: float
) -> SlideSummary:
    ranked = sorted(
        (p for p, mass in zip(probabilities, answer_masses, strict=True) if answered(mass, min_answer_mass)),
        reverse=True,
    )
    common = dict(
        tissue_found=bool(probabilities), tiles_scored=len(probabilities),
        tiles_unanswered=len(probabilities) - len(ranked), min_answer_mass=min_answer_mass, threshold=threshold,
    )
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

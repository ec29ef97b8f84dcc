"""The slide-level numbers, from the tiles' P(yes). Pure."""

from healer.slides.schemas import SlideSummary


def summarise(probabilities: list[float], threshold: float, top_k: int) -> SlideSummary:
    if not probabilities:
        return SlideSummary(
            tissue_found=False, tiles_scored=0, max_probability=None, top_k=0, top_k_mean=None,
            threshold=threshold, tiles_above_threshold=0, area_fraction_above=None,
        )
    ranked = sorted(probabilities, reverse=True)
    k = min(top_k, len(ranked))
    above = sum(p >= threshold for p in ranked)
    return SlideSummary(
        tissue_found=True,
        tiles_scored=len(ranked),
        max_probability=ranked[0],
        top_k=k,
        top_k_mean=sum(ranked[:k]) / k,
        threshold=threshold,
        tiles_above_threshold=above,
        area_fraction_above=above / len(ranked),  # tiles are equal squares: a share of tissue area
    )

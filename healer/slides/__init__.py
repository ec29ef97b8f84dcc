"""Whole-slide screening: a slide in, a P(yes) per tissue tile, a heatmap and a summary out.

    wsi.py       open a slide file with clear errors; its resolution; a bounded-memory thumbnail
    tissue.py    where the tissue is, on the thumbnail (Otsu on saturation)
    tiling.py    the tile grid at the target resolution, background tiles dropped
    heatmap.py   the tiles' P(yes) drawn over the thumbnail, with a legend
    summary.py   the slide-level numbers (max, top-k mean, area above the threshold)
    jobs.py      the job queue: one slide scored at a time, progress, cancel, results on disk, TTL
    routes.py    the HTTP surface under /slides
"""

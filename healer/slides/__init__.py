"""Whole-slide screening: a slide in, a P(yes) per tissue tile, a heatmap and a summary out.

    wsi.py       open a slide file with clear errors; its resolution; a bounded-memory thumbnail
    tissue.py    where the tissue is, on the thumbnail (Otsu on saturation)
    tiling.py    the tile grid at the target resolution, background tiles dropped
    heatmap.py   the tiles' P(yes) drawn over the thumbnail, with a legend
    summary.py   the slide-level numbers (max, top-k mean, area above the threshold)
    plan.py      what a job will score, decided at upload time (every limit answered at once)
    store.py     where a job's files live
    runner.py    who scores a job: tile batches through the shared model, then the results
    jobs.py      the life cycle: queue, progress, cancel, event streams, time to live
    schemas.py   the JSON of a job, its tiles and its summary
The HTTP surface under /slides is healer/api/slides.py.
"""

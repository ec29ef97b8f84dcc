"""Whole-slide screening: a slide in, a P(yes) per tissue tile, a heatmap and a summary out.

    wsi.py       open a slide file with clear errors; its resolution; a bounded-memory thumbnail
    tissue.py    where the tissue is, on the thumbnail (Otsu on saturation)
    tiling.py    the tile grid at the target resolution, background tiles dropped
    heatmap.py   the tiles' P(yes) drawn over the thumbnail, with a legend
    summary.py   the slide-level numbers (max, top-k mean, area above the threshold)
    plan.py      what a job will score, decided at upload time (every limit answered at once)
    state.py     a job as the store holds it: state, shards, results; the split into tasks
    store.py     where jobs live: the Store interface, and LocalStore (a directory)
    gcs.py       the Store on Cloud Storage
    stores.py    which Store SLIDE_STORE names
    scoring.py   one shard scored batch by batch into the store (service and worker alike)
    results.py   tiles, heatmaps and summary, once every shard is in
    runner.py    who scores: this process, local worker processes, or a Cloud Run Job (cloud_run.py)
    worker.py    `python -m healer.slides.worker JOB_ID`: one task of a job
    jobs.py      the life cycle from the store (SlideJobs): accept, follow, cancel; made of
      uploads.py      where a job's slide comes from: its key, a direct upload, a gs:// slide
      work_queue.py   the jobs this instance scores itself: upload places, order, heartbeat
      transitions.py  a job's state read and changed by compare-and-swap, from any instance
      liveness.py     a job whose scorer is gone is failed by whoever reads it
      progress.py     what a reader sees: a snapshot, its progress, its changes as they come
      expiry.py       finished jobs and abandoned uploads deleted after SLIDE_RESULT_TTL_S
    schemas.py   the JSON of a job, its tiles, its summary and a direct upload
The HTTP surface under /slides is healer/api/slides.py.
"""

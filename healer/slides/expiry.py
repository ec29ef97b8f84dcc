"""Time to live: finished jobs are deleted SLIDE_RESULT_TTL_S after they finished, by whichever
instance sweeps first (on Cloud Storage a bucket lifecycle rule is the backstop)."""

import asyncio
import logging
import time

from healer.errors import SlideNotFound
from healer.logs import job_tag
from healer.slides.liveness import Liveness
from healer.slides.state import FINISHED
from healer.slides.transitions import read_job

log = logging.getLogger(__name__)

UPLOAD_GRACE_S = 24 * 3600  # a direct upload not started yet is kept this long at least (slow links)


async def sweep(liveness: Liveness, ttl_s: float) -> None:
    """Deletes finished jobs older than `ttl_s`, uploads abandoned as long, and fails jobs whose
    scorer is gone (they expire in turn)."""
    store, now = liveness.store, time.time()
    for job_id, written in (await asyncio.to_thread(store.job_ids)).items():
        try:
            job = await read_job(store, job_id)
        except SlideNotFound:
            if written < now - max(ttl_s, UPLOAD_GRACE_S):  # an upload never started, or a job half deleted
                await asyncio.to_thread(store.delete_job, job_id)
            continue
        if job.status not in FINISHED:
            job = await liveness.check(job)
        if job.finished is not None and job.finished < now - ttl_s:
            await asyncio.to_thread(store.delete_job, job_id)
            log.info("slide %s expired: results deleted", job_tag(job_id))


async def sweep_forever(liveness: Liveness, ttl_s: float) -> None:
    interval = min(60.0, ttl_s / 4)
    while True:
        try:
            await sweep(liveness, ttl_s)
        except Exception:  # a store hiccup must not end the sweeping
            log.warning("slide sweep failed", exc_info=True)
        await asyncio.sleep(interval)

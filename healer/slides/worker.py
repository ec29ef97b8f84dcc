"""One task of a slide job: `python -m healer.slides.worker JOB_ID`.

The command each Cloud Run Job task runs (SLIDE_RUNNER=cloud-run-job), and each local worker
process (SLIDE_RUNNER=processes). The task takes its shard by CLOUD_RUN_TASK_INDEX of
CLOUD_RUN_TASK_COUNT (0 of 1 when unset), loads the same model the service serves (MODEL_DIR,
QUANTIZATION, ADAPTER_DIR), scores its tiles in whole batches into the store (SLIDE_STORE), and
the task that finds every shard complete writes the results. A retried task resumes its shard;
a cancelled job stops it between batches. Exit status: 0 when scored or cancelled, 1 on failure
(Cloud Run then retries the task), 2 on a bad command line.
"""

import argparse
import asyncio
import logging
import os
import sys
import traceback

from healer.logs import job_tag, setup_logging, without_job_ids
from healer.model.load import load_engine
from healer.settings import Settings
from healer.slides.results import finish
from healer.slides.scoring import score_shard
from healer.slides.state import FINISHED, STATE, JobState, key
from healer.slides.store import Store
from healer.slides.stores import open_store

log = logging.getLogger("healer.slides.worker")


def task_position() -> tuple[int, int]:
    index = int(os.environ.get("CLOUD_RUN_TASK_INDEX", "0"))
    count = int(os.environ.get("CLOUD_RUN_TASK_COUNT", "1"))
    if not 0 <= index < count:
        raise ValueError(f"CLOUD_RUN_TASK_INDEX {index} is outside 0..{count - 1}")
    return index, count


async def run(job_id: str, settings: Settings) -> int:
    index, count = task_position()
    store = open_store(settings.slide_store, settings.slide_store_mount)
    try:
        return await _score(job_id, index, count, settings, store)
    finally:
        store.close()


async def _score(job_id: str, index: int, count: int, settings: Settings, store: Store) -> int:
    try:
        job = JobState.of(await asyncio.to_thread(store.read_json, key(job_id, STATE)))
    except FileNotFoundError:
        log.warning("slide %s: no such job (deleted or expired); nothing to do", job_tag(job_id))
        return 0
    if job.status in FINISHED:
        log.info("slide %s: already %s; nothing to do", job_tag(job_id), job.status)
        return 0
    if count != job.task_count:
        log.error("slide %s: this execution has %d tasks, the job was split into %d", job_tag(job_id),
                  count, job.task_count)
        return 1
    engine = await asyncio.to_thread(load_engine, settings)
    completed = await score_shard(store, job, index, count, settings,
                                  lambda queries: asyncio.to_thread(engine.generate, queries))
    if not completed:
        log.info("slide %s: task %d of %d stopped: the job was cancelled", job_tag(job_id), index, count)
        return 0
    final = await asyncio.to_thread(finish, store, job_id)
    log.info("slide %s: task %d of %d scored its shard%s", job_tag(job_id), index, count,
             "; the job is done" if final is not None and final.status == "done" else "")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m healer.slides.worker", description=__doc__.splitlines()[0])
    parser.add_argument("job_id", help="the id POST /slides answered with")
    options = parser.parse_args(argv)
    settings = Settings()
    setup_logging(settings.log_level, settings.log_format)
    try:
        return asyncio.run(run(options.job_id, settings))
    except Exception:  # the traceback may name the job's objects: only their hash reaches the log
        log.error("slide %s: task failed\n%s", job_tag(options.job_id), without_job_ids(traceback.format_exc()))
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""A slide job as the store holds it: every instance and every worker task reads the same objects.

    <job id>/upload.json                 a direct upload opened, not yet started (file suffix, size)
             slide<.suffix>              the slide (or `state.slide` names a gs:// object elsewhere)
             state.json                  JobState: changed only by compare-and-swap
             thumbnail.png               drawn under the heatmap
             shards/00000-of-00003.json  one task's scored tiles so far, and whether it is complete
             tiles.json, overlay.png, heatmap.png    once every shard is in

    queued ──▶ running ──▶ done
       │          ├──────▶ failed      (the slide's pixels unreadable, a task out of retries,
       │          │                     the instance scoring it gone)
       └──────────┴──────▶ cancelled   (DELETE, or the scoring instance shutting down)

Shards are contiguous runs of whole batches (SLIDE_BATCH_SIZE tiles), so a slide split over any
number of tasks is scored in exactly the batches one process would use: the same numbers.
"""

import math
import time
from dataclasses import asdict, dataclass, field

FINISHED = ("done", "failed", "cancelled")

UPLOAD, STATE, THUMBNAIL = "upload.json", "state.json", "thumbnail.png"
TILES, OVERLAY, HEATMAP = "tiles.json", "overlay.png", "heatmap.png"


def key(job_id: str, name: str) -> str:
    return f"{job_id}/{name}"


@dataclass
class JobState:
    id: str
    question: str
    info: dict  # SlideInfo
    tiles: list[list]  # [x, y, size, tissue fraction] per tissue tile, in scoring order
    slide: str  # a key of the store, or a gs:// URI the service was asked to read
    owned_slide: bool  # deleted once scored (an outside gs:// slide is never touched)
    runner: str  # SLIDE_RUNNER when the job was accepted
    task_count: int
    batch_size: int
    demo: bool  # a random-weight model scores it: the heatmap says so
    threshold: float  # the results' rules, fixed when the job was accepted
    top_k: int
    min_answer_mass: float
    triage: list[float] | None = None  # [rule out, rule in]; None: no triage bands
    status: str = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    heartbeat: float | None = None  # refreshed by the instance that scores a local job
    execution: str | None = None  # the Cloud Run Job execution scoring it
    error: str | None = None
    summary: dict | None = None

    @classmethod
    def of(cls, value: dict) -> "JobState":
        return cls(**value)

    def to_json(self) -> dict:
        return asdict(self)


def shard_name(index: int, count: int) -> str:
    return f"shards/{index:05d}-of-{count:05d}.json"


def shard_range(total: int, index: int, count: int, batch_size: int) -> range:
    """The tiles of task `index` of `count`: a contiguous run of whole batches."""
    batches = math.ceil(total / batch_size)
    first = batches * index // count
    last = batches * (index + 1) // count
    return range(min(first * batch_size, total), min(last * batch_size, total))


def task_count(tiles: int, batch_size: int, tiles_per_task: int, max_tasks: int) -> int:
    """As many tasks as SLIDE_TILES_PER_TASK asks, within SLIDE_MAX_TASKS and one batch each."""
    batches = max(1, math.ceil(tiles / batch_size))
    return max(1, min(math.ceil(tiles / tiles_per_task), max_tasks, batches))


@dataclass
class Shard:
    index: int
    count: int
    probabilities: list[float] = field(default_factory=list)
    answer_masses: list[float] = field(default_factory=list)  # P(yes) + P(no), in step
    complete: bool = False

    @classmethod
    def of(cls, value: dict) -> "Shard":
        return cls(**value)

    def to_json(self) -> dict:
        return asdict(self)

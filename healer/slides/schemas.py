"""The JSON of a slide job, its tiles and its summary, as the OpenAPI schema shows it."""

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from healer.screening.schemas import BAND_DESCRIPTION, ModelCard, TriageBands
from healer.screening.triage import Band


class SlideInfo(BaseModel):
    width: int = Field(description="Level-0 width in pixels")
    height: int = Field(description="Level-0 height in pixels")
    levels: int
    vendor: str | None = Field(description="OpenSlide's name for the format, e.g. aperio, generic-tiff")
    mpp: float | None = Field(description="µm per level-0 pixel as the slide states it; null when it does not")
    tile_mpp: float | None = Field(description="µm per pixel of the tiles scored; null when the slide states no mpp")
    tile_size: int = Field(description="Side of one tile in level-0 pixels")
    tile_px: int = Field(description="Side of one tile as the model sees it, in pixels")


class SlideProgress(BaseModel):
    tiles_done: int
    tiles_total: int = Field(description="Tiles with enough tissue to score")
    elapsed_s: float = Field(description="Seconds spent scoring so far")
    eta_s: float | None = Field(description="Estimated seconds left; null until the first batch is scored")
    queue_position: int | None = Field(description="Jobs ahead of this one while it waits; null otherwise")


class SlideSummary(BaseModel):
    tissue_found: bool = Field(description="False when no tile held enough tissue: nothing was scored")
    tiles_scored: int
    tiles_unanswered: int = Field(
        description="Tiles whose answer mass was below min_answer_mass: not counted in any P(yes) figure"
    )
    min_answer_mass: float = Field(description="MIN_ANSWER_MASS at scoring time")
    max_probability: float | None = Field(description="Highest P(yes) of an answered tile")
    top_k: int = Field(description="k of the top-k mean (at most the answered tiles)")
    top_k_mean: float | None = Field(description="Mean P(yes) of the k highest answered tiles")
    threshold: float = Field(description="P(yes) at or above which a tile counts as positive (SLIDE_THRESHOLD)")
    tiles_above_threshold: int
    area_fraction_above: float | None = Field(description="Positive tiles / answered tiles (tissue area)")
    triage: Band | None = Field(None, description="The slide's band: its most urgent tile's (rule-in before refer "
                                "before rule-out); refer when no tissue was found. " + BAND_DESCRIPTION)
    tiles_per_band: dict[Band, int] | None = Field(None, description="How many tiles fell in each band; null "
                                                   "without triage thresholds")
    triage_thresholds: TriageBands | None = Field(None, description="The thresholds the bands were drawn with")


class SlideJob(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    question: str
    slide: SlideInfo
    progress: SlideProgress
    summary: SlideSummary | None = Field(description="Set when status is done")
    error: str | None = Field(description="Why the job failed, for a person; null otherwise")
    heatmap_url: str | None = Field(description="PNG: tile P(yes) over the thumbnail, with a legend; when done")
    tiles_url: str | None = Field(description="JSON: every scored tile; when done")
    expires_in_s: float | None = Field(description="Seconds until the results are deleted; once finished")
    model: ModelCard
    disclaimer: str


class SlideTile(BaseModel):
    x: int = Field(description="Left edge in level-0 pixels")
    y: int = Field(description="Top edge in level-0 pixels")
    size: int = Field(description="Side in level-0 pixels")
    tissue: float = Field(ge=0, le=1, description="Fraction of the tile that is tissue")
    probability: float = Field(ge=0, le=1, description="P(yes) for this tile")
    answer_mass: float = Field(
        ge=0, le=1, description="P(yes) + P(no) where the model answered: how much it wanted to answer "
        "at all; below MIN_ANSWER_MASS this tile's probability is not an answer"
    )
    triage: Band | None = Field(None, description=BAND_DESCRIPTION)


class SlideTiles(BaseModel):
    id: str
    width: int = Field(description="Slide level-0 width in pixels")
    height: int = Field(description="Slide level-0 height in pixels")
    threshold: float
    triage: TriageBands | None = Field(None, description="The triage thresholds; null: not configured")
    tiles: list[SlideTile]
    disclaimer: str


class SlideUploadRequest(BaseModel):
    filename: str = Field(min_length=1, max_length=255, description="The slide's file name; its suffix says the format")
    size: int = Field(gt=0, description="Bytes the client will send")


class SlideUpload(BaseModel):
    upload_id: str = Field(description="Start the job with it once every byte is sent: POST /slides")
    upload_url: str = Field(
        description="Cloud Storage resumable upload session: PUT the bytes in chunks with Content-Range; "
        "a status query (empty PUT, `Content-Range: bytes */SIZE`) says what arrived after a dropped connection"
    )
    chunk_bytes: int = Field(description="Chunk size to send (a multiple of 256 KiB; the last may be shorter)")


class StartSlide(BaseModel):
    """A slide already in Cloud Storage: a finished direct upload, or an object the service may read."""

    upload_id: str | None = Field(None, pattern="^[0-9a-f]{32}$", description="From POST /slides/uploads")
    # Cloud Storage's own rules: a bucket name, then an object name of 1-1024 characters; no
    # control characters (CR and LF are forbidden there, the rest cannot name a slide).
    slide_uri: str | None = Field(None, pattern=r"^gs://[a-z0-9][a-z0-9._-]{1,221}/[^\x00-\x1f\x7f]{1,1024}$",
                                  description="gs://bucket/path of a slide the service account may read")
    question: str | None = Field(None, description="Asked of every tile; defaults to the colorectal-cancer question")

    @model_validator(mode="after")
    def _one_source(self) -> "StartSlide":
        if (self.upload_id is None) == (self.slide_uri is None):
            raise ValueError("give exactly one of upload_id and slide_uri")
        return self

"""Every setting of the service, read once from the environment (12-factor).

The README's settings table lists the same names; bad values fail at start-up with pydantic's
message naming the variable.
"""

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from healer.screening import triage

MEBIBYTE = 1024 * 1024
_JOB_NAME = re.compile(r"projects/[^/]+/locations/[^/]+/jobs/[^/]+")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    model_dir: Path = Path("medgemma-model")
    model_id: str = "google/medgemma-4b-it"
    model_revision: str | None = None
    adapter_dir: Path | None = None  # a LoRA adapter from `python -m healer.finetune`, merged in at start-up
    quantization: Literal["int8", "none"] = "int8"
    device: Literal["auto", "cuda", "cpu"] = "auto"
    max_new_tokens: int = Field(48, ge=1, le=256)
    # What computes the answers: transformers in this process (MODEL_DIR), or "vllm": any
    # OpenAI-compatible vision server (vLLM, llama-server, a Vertex AI endpoint) at ENGINE_URL,
    # the OpenAI base URL (http://host:8000/v1). docs/operations.md says why each default.
    engine: Literal["transformers", "vllm"] = "transformers"
    engine_url: str | None = None
    engine_api_key: SecretStr | None = None  # sent as a Bearer token; never logged
    engine_model: str | None = None  # unset: the first model the server lists (a LoRA module's name to serve one)
    engine_top_logprobs: int = Field(20, ge=1, le=100)  # P(yes) is read from this many tokens a step
    engine_ready_timeout_s: float = Field(300, gt=0)  # start-up waits this long for GET /models
    engine_timeout_s: float = Field(300, gt=0)  # one answer from the engine, start to end
    # P(yes) a "yes" needs; see healer.screening.answers. Unset with ADAPTER_DIR: the adapter card's.
    threshold: float = Field(0.5, gt=0, lt=1)
    # P(yes) + P(no) at the answer step below which the answer is "uncertain": the model must
    # rather answer than not (docs/api.md, "How the answer is decided").
    min_answer_mass: float = Field(0.5, ge=0, lt=1)
    # Triage bands (healer.screening.triage): P(yes) below TRIAGE_RULE_OUT is rule-out, above
    # TRIAGE_RULE_IN rule-in, else refer. Both from `python -m healer.evaluate --triage`, or its
    # triage.json as TRIAGE_FILE. Unset: no band, answers as without triage.
    triage_rule_out: float | None = Field(None, ge=0, le=1)
    triage_rule_in: float | None = Field(None, ge=0, le=1)
    triage_file: Path | None = None

    max_batch_size: int = Field(4, ge=1, le=64)
    batch_wait_ms: float = Field(10, ge=0, le=1000)
    max_queue: int = Field(16, ge=1, le=1024)
    request_timeout_s: float = Field(600, gt=0)  # keep below Cloud Run's --timeout (deploy.sh does)
    shutdown_grace_s: float = Field(8, ge=0)  # Cloud Run's SIGKILL comes 10 s after SIGTERM
    cache_size: int = Field(256, ge=0)  # identical image + question answered from memory; 0: off

    max_upload_mb: float = Field(20, gt=0, le=512)
    max_image_pixels: int = Field(89_478_485, gt=0)  # Pillow's own decompression-bomb limit
    decode_workers: int = Field(2, ge=1, le=64)  # images decoded at full size at once (memory bound)
    max_question_chars: int = Field(500, ge=1, le=4000)

    host: str = "0.0.0.0"
    port: int = Field(8080, ge=1, le=65535)
    cors_origins: Annotated[list[str], NoDecode] = []
    api_key: SecretStr | None = None  # when set, /predict and /metrics need it in X-API-Key
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "text", "json"] = "auto"  # auto: JSON on Cloud Run (K_SERVICE set)

    # Whole-slide screening (healer/slides): limits, tiling, scoring, and how long results live.
    max_slide_mb: float = Field(2048, gt=0, le=65536)
    max_slide_tiles: int = Field(5000, ge=1)  # tissue tiles scored per slide
    slide_mpp: float = Field(0.5, gt=0, le=16)  # target µm per pixel of a tile
    slide_tile_px: int = Field(512, ge=64, le=4096)  # tile side in pixels at SLIDE_MPP
    slide_tissue_fraction: float = Field(0.5, gt=0, le=1)  # tiles with less tissue are skipped
    slide_batch_size: int = Field(4, ge=1, le=64)
    slide_threshold: float = Field(0.5, ge=0, le=1)  # P(yes) that counts a tile as positive
    slide_top_k: int = Field(5, ge=1)  # the summary's mean of the k highest tiles
    slide_queue: int = Field(4, ge=1, le=256)  # jobs waiting behind the running one
    slide_result_ttl_s: float = Field(3600, gt=0)  # results (files included) deleted after this
    # Where jobs live and who scores them (docs/slides.md, "At scale"). SLIDE_STORE: a directory
    # (unset: a temporary one per process) or gs://bucket/prefix, which every instance shares.
    slide_store: str | None = None
    slide_store_mount: Path | None = None  # where SLIDE_STORE's bucket is mounted (Cloud Run volume)
    slide_runner: Literal["local", "processes", "cloud-run-job"] = "local"
    slide_workers: int = Field(2, ge=1, le=64)  # SLIDE_RUNNER=processes: worker processes per job
    slide_cloud_run_job: str | None = None  # projects/P/locations/R/jobs/NAME
    slide_tiles_per_task: int = Field(100, ge=1)  # cloud-run-job: tiles per task…
    slide_max_tasks: int = Field(50, ge=1, le=10000)  # …and at most this many tasks
    # Slides are read in a child process (healer/slides/reader.py), killed when a deadline passes.
    slide_open_timeout_s: float = Field(10, gt=0)  # open the file and check its header
    slide_read_timeout_s: float = Field(60, gt=0)  # the thumbnail, and each batch of tiles
    slide_reader_memory_mb: int = Field(1024, ge=256)  # the child's address-space cap

    @model_validator(mode="after")
    def _engine_needs(self) -> "Settings":
        if self.engine == "vllm":
            if not self.engine_url:
                raise ValueError("ENGINE=vllm needs ENGINE_URL, the engine's OpenAI base URL "
                                 "(e.g. http://host:8000/v1)")
            if not self.engine_url.startswith(("http://", "https://")):
                raise ValueError("ENGINE_URL must start with http:// or https:// (e.g. http://host:8000/v1)")
            if self.adapter_dir:
                raise ValueError("ADAPTER_DIR merges an adapter into local weights; with ENGINE=vllm, serve it "
                                 "with the engine's LoRA serving and set ENGINE_MODEL to its name")
        return self

    @model_validator(mode="after")
    def _triage_bands(self) -> "Settings":
        given = (self.triage_rule_out, self.triage_rule_in)
        if self.triage_file is not None:
            if given != (None, None):
                raise ValueError("set TRIAGE_FILE or TRIAGE_RULE_OUT and TRIAGE_RULE_IN, not both")
            self.triage_rule_out, self.triage_rule_in = triage.read_file(self.triage_file)
            if not (0 <= self.triage_rule_out <= 1 and 0 <= self.triage_rule_in <= 1):
                raise ValueError(f"TRIAGE_FILE {self.triage_file}: the thresholds must lie in [0, 1]")
        elif None in given and given != (None, None):
            raise ValueError("set both TRIAGE_RULE_OUT and TRIAGE_RULE_IN (the last lines of "
                             "`python -m healer.evaluate --triage`), or neither")
        if self.triage_rule_out is not None and self.triage_rule_in < self.triage_rule_out:
            raise ValueError(f"TRIAGE_RULE_IN ({self.triage_rule_in:g}) is below TRIAGE_RULE_OUT "
                             f"({self.triage_rule_out:g}): the rule-in band would overlap the rule-out band")
        return self

    @model_validator(mode="after")
    def _runner_needs(self) -> "Settings":
        if self.slide_runner == "cloud-run-job":
            if not (self.slide_store or "").startswith("gs://"):
                raise ValueError("SLIDE_RUNNER=cloud-run-job needs SLIDE_STORE=gs://bucket/prefix: "
                                 "the job's tasks read and write the same store")
            if not self.slide_cloud_run_job or not _JOB_NAME.fullmatch(self.slide_cloud_run_job):
                raise ValueError("SLIDE_RUNNER=cloud-run-job needs SLIDE_CLOUD_RUN_JOB="
                                 "projects/PROJECT/locations/REGION/jobs/NAME")
        return self

    @field_validator("model_revision", "adapter_dir", "slide_store", "slide_store_mount", "slide_cloud_run_job",
                     "engine_url", "engine_api_key", "engine_model", "triage_rule_out", "triage_rule_in",
                     "triage_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """`ADAPTER_DIR=` in a shell or a deploy script means "none", not the current directory."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard(cls, origins: list[str]) -> list[str]:
        if "*" in origins:
            raise ValueError("list the page origins explicitly; '*' would let any site call the API")
        return origins

    def threshold_for(self, adapter_threshold: float | None) -> float:
        """THRESHOLD when set; else the one the adapter's card chose on validation; else 0.5."""
        if "threshold" in self.model_fields_set or adapter_threshold is None:
            return self.threshold
        return adapter_threshold

    @property
    def triage(self) -> triage.Triage | None:
        """The bands to answer with; None when they are not configured."""
        if self.triage_rule_out is None:
            return None
        return triage.Triage(self.triage_rule_out, self.triage_rule_in)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MEBIBYTE)

    @property
    def max_slide_bytes(self) -> int:
        return int(self.max_slide_mb * MEBIBYTE)

"""All tunables of the reward service, in one place.

Every field can be set from the environment with the ``RLRF_`` prefix (``RLRF_SIZE=512``) or from
a ``.env`` file. Code receives a ``Settings`` instance; nothing else reads the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Renderer = Literal["resvg", "cairosvg"]
Device = Literal["auto", "cpu", "cuda"]
RasterPolicy = Literal["reject", "allow"]

INFLIGHT_PER_WORKER = 256  # rollouts admitted per render process when max_inflight_rollouts is unset


class Settings(BaseSettings):
    """Service configuration. Defaults suit a 2-core CPU box rendering 224 px canvases."""

    model_config = SettingsConfigDict(env_prefix="RLRF_", env_file=".env", extra="ignore")

    # Canvas and renderer -------------------------------------------------------------------
    size: int = Field(224, ge=16, le=1024, description="Canvas side in pixels (reference and candidates).")
    renderer: Renderer = Field("resvg", description="resvg (fast, default) or cairosvg (paper parity).")
    font_file: Path = Field(
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
        description="The one font <text> renders with, so text is deterministic across machines.",
    )
    font_family: str = Field("DejaVu Sans", description="Family name inside font_file.")

    # Sandbox -------------------------------------------------------------------------------
    workers: int = Field(2, ge=1, le=256, description="Render worker processes.")
    render_timeout_s: float = Field(3.0, gt=0, description="Wall-clock limit for one SVG in a worker.")
    worker_memory_mb: int = Field(2048, ge=256, description="RLIMIT_AS of each render worker.")
    chunk_size: int = Field(8, ge=1, le=256, description="SVGs handed to a worker per message.")

    # Policy (checked before any renderer sees the code) -----------------------------------
    max_completion_chars: int = Field(8_000_000, ge=1, description="Longer completions are cut before extraction.")
    max_svg_bytes: int = Field(256 * 1024, ge=64, description="Larger SVGs are rejected (too_large).")
    max_elements: int = Field(10_000, ge=1, description="More elements are rejected (too_many_elements).")
    max_depth: int = Field(64, ge=2, description="Deeper nesting is rejected (too_deep).")
    embedded_raster: RasterPolicy = Field(
        "reject",
        description="'reject': an <image> is a failure (pasting pixels is the hack). 'allow': score and flag it; "
        "where the reference has no <image>, the embedded_raster guard caps its credit (guards.py).",
    )
    max_data_uri_bytes: int = Field(512 * 1024, ge=0, description="Cap on one data:image URI.")
    max_raster_pixels: int = Field(2048 * 2048, ge=1, description="Cap on an embedded raster's decoded size.")

    # HTTP service ----------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address `rlrf serve` binds.")
    port: int = Field(8000, ge=1, le=65535, description="Port `rlrf serve` binds.")
    api_token: SecretStr | None = Field(None, description="If set, requests need 'Authorization: Bearer <token>'.")
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Larger request bodies get 413.")
    max_inflight_rollouts: int | None = Field(
        None,
        ge=1,
        description="Rollouts queued or scoring at once; beyond it requests get 429 (back-pressure), and a "
        "request holding more than this gets 413. Unset: INFLIGHT_PER_WORKER x workers in embedded mode "
        "(about 1.5 s of queued work, see inflight_limit), 16,384 in celery mode (set it for your cluster).",
    )
    retry_after_s: int = Field(
        1, ge=1, description="Least Retry-After sent with 429; it grows with the recent time a request takes."
    )
    openrlhf_hold_s: float = Field(
        150.0,
        ge=0,
        description="How long POST /openrlhf/reward keeps re-scoring rollouts that hit an infrastructure error "
        "(or a 429) before it answers 503; OpenRLHF 0.11 gives up on a request after 180 s, then 5 tries 1 s apart.",
    )

    # Distributed mode (Celery on Redis) -------------------------------------------------------
    backend: Literal["embedded", "celery"] = Field(
        "embedded", description="embedded: render workers in the API process; celery: on `rlrf worker` hosts."
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Celery broker, result store, reference cache.")
    cpu_queue: str = Field("rlrf.cpu", description="Celery queue of the render/score tasks.")
    celery_chunk_size: int = Field(16, ge=1, description="Rollouts per Celery task; a group spans several workers.")
    task_time_limit_s: float = Field(
        60.0,
        gt=0,
        description="Limit of one Celery task (a chunk): SVGs not started by then come back as status 'error'; "
        "one that started runs at most render_timeout_s more.",
    )
    visibility_timeout_s: float = Field(
        75.0,
        gt=0,
        description="Redis redelivers an unacknowledged task (its worker died) after this; must exceed "
        "task_time_limit_s + render_timeout_s, so a running chunk is never handed out twice.",
    )
    request_deadline_s: float = Field(
        300.0, gt=0, description="Rollouts still unscored after this come back as status 'error', reward null."
    )

    # Learned rewards (DreamSim, CLIP): local weight files only, never a hub download ------------
    dreamsim_dir: Path | None = Field(
        None,
        description="DreamSim cache directory (the layout `dreamsim(cache_dir=...)` creates, plus the DINO "
        "backbone at checkpoints/dino_vitbase16_pretrain.pth). Unset: dreamsim components unavailable.",
    )
    dreamsim_type: Literal["ensemble", "dino_vitb16", "open_clip_vitb32", "clip_vitb32"] = Field(
        "ensemble", description="Which DreamSim variant the directory holds (DreamSim's own names)."
    )
    clip_checkpoint: Path | None = Field(
        None, description="open_clip checkpoint file (.bin/.pt/.safetensors). Unset: clip_text unavailable."
    )
    clip_model: str = Field("ViT-B-32", description="open_clip architecture name of clip_checkpoint.")
    clip_model_config: Path | None = Field(
        None, description="JSON architecture config for a model open_clip does not ship (its file stem is the name)."
    )
    device: Device = Field("auto", description="Where the learned models run: auto = cuda when available.")
    model_max_batch: int = Field(256, ge=1, le=8192, description="Images per forward pass of a learned model.")
    model_max_wait_ms: float = Field(
        5.0, ge=0, le=1000, description="How long a batch waits for more rollouts (other groups) before it runs."
    )
    gpu_queue: str = Field("rlrf.gpu", description="Celery queue of the learned-model (embedding) tasks.")
    feature_cache_size: int = Field(1024, ge=1, description="Reference embeddings kept per process.")

    # VLM judge (services/judge_proxy) ---------------------------------------------------------
    judge_url: str | None = Field(None, description="Base URL of the judge proxy. Unset: judge unavailable.")
    judge_token: SecretStr | None = Field(None, description="Bearer token for the judge proxy, if it needs one.")
    judge_backend: str | None = Field(None, description="Judge backend name; the proxy's default when unset.")
    judge_rubric_im2svg: str = Field("vfig-im2svg", description="Rubric for the judge component on Im2SVG groups.")
    judge_rubric_text2svg: str = Field("rlrf-text2svg", description="Rubric for the judge on Text2SVG groups.")
    judge_timeout_s: float = Field(120.0, gt=0, description="Deadline of one judge call for a whole group.")

    # Dashboard --------------------------------------------------------------------------------
    dashboard_groups: int = Field(20, ge=0, le=1000, description="Scored groups kept for /dashboard (0: off).")
    dashboard_interval_s: float = Field(
        1.0, ge=0, description="At most one group per interval is captured with its renders (bounds the cost)."
    )
    dashboard_runs: int = Field(
        8, ge=0, le=64, description="Training runs kept for the run view and labelled in /metrics (0: off)."
    )
    dashboard_steps: int = Field(500, ge=1, le=100_000, description="Steps kept per run (a ring: oldest dropped).")
    alert_window_steps: int = Field(5, ge=1, le=1000, description="Recent steps the alert shares are taken over.")
    alert_flag_share: float = Field(
        0.25, ge=0, le=1, description="Alert when one flag marks more than this share of a run's recent rollouts."
    )
    alert_error_share: float = Field(
        0.05, ge=0, le=1, description="Alert when more than this share of recent rollouts got status error."
    )

    # Scoring -------------------------------------------------------------------------------
    profile: str = Field("rlrf-im2svg", description="Default weight profile (see profiles.py).")
    blank_fraction: float = Field(0.005, ge=0, le=1, description="Renders with fewer non-white pixels are blank.")
    reference_cache_size: int = Field(256, ge=1, description="Prepared references kept per process.")

    @property
    def inflight_limit(self) -> int:
        """``max_inflight_rollouts``, or the default derived from the render pool when unset.

        Little's law: rollouts in flight = throughput x time in the system. One render process
        scores about 170 typical rollouts/s at 224 px (README benchmark: 300-390 rewards/s with 2),
        so 256 rollouts per process is ~1.5 s of work queued ahead of a newly admitted group (ten
        times a 64-rollout group's own scoring time). Past that, waiting in our queue only hides the
        overload from the client, which a 429 tells it to handle. In celery mode the API does not
        know how many render processes the workers run, so the limit is the generous old one.
        """
        if self.max_inflight_rollouts is not None:
            return self.max_inflight_rollouts
        return INFLIGHT_PER_WORKER * self.workers if self.backend == "embedded" else 16_384

    @field_validator("api_token", "judge_token", "judge_url", "dreamsim_dir", "clip_checkpoint", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``RLRF_API_TOKEN=`` (empty, as templates leave it) means unset, not an empty token."""
        return None if isinstance(value, str) and not value.strip() else value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()

"""A group's reference, prepared once: rendered (or decoded) in the sandbox, measured, and cached.

Every group needs its reference's canvas, length and structure before any rollout is scored; many
groups share one (a prompt's 64 rollouts split across ranks, OpenRLHF's one sample per request, an
eval set scored every epoch). ``References`` keeps them in an LRU keyed by content hash and render
settings, renders each one once even when groups ask for it at the same moment (single flight), and
keeps the learned models' features of references in a second LRU.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, Protocol

import cv2
import numpy as np

from services.reward_api.components import Canvas
from services.reward_api.components.base import Requirement
from services.reward_api.components.length import char_length
from services.reward_api.core.errors import BackendError, BadReferenceError
from services.reward_api.core.schemas import ReferenceIn
from services.reward_api.core.settings import Settings
from services.reward_api.guards import Structure, structure
from services.reward_api.lru import LRU
from services.reward_api.models.scorer import FEATURES
from services.reward_api.sandbox import TaskCrash, TaskFailure, TaskTimeout
from services.reward_api.scoring import ReferenceRender, RenderJob, is_blank, policy_limits, render_job
from services.reward_api.svg.extract import extract_svg


class ReferenceBackend(Protocol):
    """What preparing a reference needs of the pipeline's ``Backend``: a sandboxed render, embeddings."""

    def render_reference(
        self, svg: str, job: RenderJob, *, deadline: float | None = None
    ) -> ReferenceRender | TaskFailure: ...

    def embed(self, inputs: Mapping[str, Sequence[Any]]) -> dict[str, np.ndarray]: ...


MAX_REFERENCE_PIXELS = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class PreparedReference:
    """A group's reference, rendered once and shared by all its rollouts (and later groups)."""

    key: str
    canvas: Canvas | None  # None for a text-only (Text2SVG) reference
    intrinsic_size: tuple[float, float]
    length: int | None
    blank: bool
    structure: Structure | None = None  # what the guards compare candidates with (SVG references only)

    @property
    def carries(self) -> frozenset[Requirement]:
        """What components may require of it (``Component.requires``/``applies_with``), the prompt aside."""
        carried: set[Requirement] = set()
        if self.canvas is not None:
            carried.add("image")
        if self.length is not None:
            carried.add("svg")
        return frozenset(carried)


class References:
    """The prepared references of one pipeline, and their learned-model features."""

    def __init__(self, settings: Settings, backend: ReferenceBackend) -> None:
        self.settings = settings
        self._backend = backend
        self._limits = policy_limits(settings)
        self._prepared: LRU[str, PreparedReference] = LRU(settings.reference_cache_size)
        self._preparing: dict[str, Future[PreparedReference]] = {}  # references being rendered now
        self._features: LRU[tuple[str, str], np.ndarray] = LRU(settings.feature_cache_size)
        self._lock = threading.Lock()

    def prepare(self, reference: ReferenceIn, *, tokens: int | None = None) -> PreparedReference:
        """Render or decode the reference once; later groups with the same content reuse it."""
        s = self.settings
        content = reference.svg if reference.svg is not None else reference.image_b64
        if content is None:  # text-only (Text2SVG): nothing to render; components check what they need
            key = hashlib.sha256(f"text|{reference.text}".encode("utf-8", "surrogatepass")).hexdigest()
            return PreparedReference(key, None, (0.0, 0.0), None, False)
        kind = "svg" if reference.svg is not None else "image"
        key = hashlib.sha256(
            f"{kind}|{s.size}|{s.renderer}|{s.font_family}|{content}".encode("utf-8", "surrogatepass")
        ).hexdigest()
        # Single flight: concurrent groups with the same reference (OpenRLHF sends one sample per
        # request) wait for the one render in progress instead of each rendering it again.
        with self._lock:
            cached = self._prepared.get(key)
            flight = self._preparing.get(key) if cached is None else None
            owner = cached is None and flight is None
            if owner:
                flight = self._preparing[key] = Future()
        if owner:
            assert flight is not None
            try:
                cached = self._render(key, reference.svg) if reference.svg is not None else self._decode(key, content)
            except BaseException as exc:
                flight.set_exception(exc)
                raise
            else:
                flight.set_result(cached)
                with self._lock:
                    self._prepared.put(key, cached)
            finally:
                with self._lock:
                    self._preparing.pop(key, None)
        elif cached is None:
            assert flight is not None
            cached = flight.result()  # the owner's error, if it failed, is this group's too
        return replace(cached, length=tokens) if tokens is not None else cached

    def features(self, reference: PreparedReference, text: str | None, wanted: list[str]) -> dict[str, np.ndarray]:
        """The reference's features, embedded once per content hash and kept in an LRU."""
        keys = {f: _feature_key(reference, text, f) for f in wanted if FEATURES[f].input != "text" or text}
        found = {f: v for f, k in keys.items() if (v := self._features.get(k)) is not None}
        missing = {f: k for f, k in keys.items() if f not in found}
        if missing:
            inputs: dict[str, list[Any]] = {}
            for f in missing:
                kind = FEATURES[f].input
                if kind == "text":
                    inputs[f] = [text]
                    continue
                assert reference.canvas is not None  # _check_reference: image features need an image reference
                inputs[f] = [reference.canvas.edges if kind == "edges" else reference.canvas.image]
            embedded = self._backend.embed(inputs)
            for f, k in missing.items():
                found[f] = embedded[f][0]
                self._features.put(k, found[f])
        return found

    def _render(self, key: str, svg: str) -> PreparedReference:
        # Ground truth may embed rasters; everything else in the policy still applies.
        job = render_job(self.settings, limits=replace(self._limits, reject_embedded_raster=False))
        rendered = self._backend.render_reference(
            svg, job, deadline=time.monotonic() + self.settings.request_deadline_s
        )
        # The pool already tried a crash on a second worker: the reference itself hangs or kills renderers.
        # Anything else (a stalled or lost worker, a deadline, Redis) is ours: BackendError, a retryable 503.
        if isinstance(rendered, (TaskTimeout, TaskCrash)):
            raise BadReferenceError(f"reference SVG could not be rendered: {type(rendered).__name__}: {rendered}")
        if isinstance(rendered, TaskFailure):
            raise BackendError(f"render backend failed on the reference: {type(rendered).__name__}: {rendered}")
        if rendered.image is None:
            raise BadReferenceError(f"reference SVG is {rendered.status.value}: {rendered.detail}")
        canvas = Canvas(rendered.image)
        extraction = extract_svg(svg)
        document = extraction.svg or svg
        return PreparedReference(
            key,
            canvas,
            rendered.intrinsic_size,
            char_length(document),
            is_blank(canvas, self.settings.blank_fraction),
            structure(document),
        )

    def _decode(self, key: str, image_b64: str) -> PreparedReference:
        try:
            data = base64.b64decode(image_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadReferenceError(f"reference image_b64 is not valid base64: {exc}") from None
        image = _decode_image(data)
        h, w = image.shape[:2]
        canvas = Canvas(_letterbox(image, self.settings.size, self.settings.size))
        return PreparedReference(
            key, canvas, (float(w), float(h)), None, is_blank(canvas, self.settings.blank_fraction)
        )


def _feature_key(reference: PreparedReference, text: str | None, feature: str) -> tuple[str, str]:
    if FEATURES[feature].input == "text":
        return hashlib.sha256(f"text|{text}".encode("utf-8", "surrogatepass")).hexdigest(), feature
    return reference.key, feature


def _decode_image(data: bytes) -> np.ndarray:
    """PNG/JPEG bytes to BGR uint8, transparency composited on white."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise BadReferenceError(f"reference image cannot be read: {exc}") from None
    if width * height > MAX_REFERENCE_PIXELS:
        raise BadReferenceError(f"reference image is {width}x{height}, over {MAX_REFERENCE_PIXELS} pixels")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise BadReferenceError("reference image cannot be decoded (PNG or JPEG expected)")
    if image.dtype != np.uint8:
        image = (image / 257).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        return (image[:, :, :3] * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    return image


def _letterbox(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Fit ``image`` inside the canvas keeping its aspect, centred on white (as SVG 'meet' does)."""
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    canvas = np.full((height, width, 3), 255, np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas

"""The learned models of one process, loaded once, fed through cross-request batchers.

A *feature* is what a model component compares: ``dreamsim`` (DreamSim embedding of the render),
``dreamsim_edges`` (of its Canny edge map), ``clip_image`` and ``clip_text``. Inputs are what a
``Canvas`` holds (BGR uint8 renders, single-channel edge maps) or prompt strings; this module
converts them for the models. Embedded mode has one ``ModelScorer`` in the API process; distributed
mode has one per GPU worker process (CUDA does not survive ``fork``, so never in a prefork child).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from services.reward_api.core.errors import UnavailableComponentError
from services.reward_api.core.settings import Settings
from services.reward_api.models.batcher import Batcher
from services.reward_api.models.weights import dreamsim_files, require, require_file

Input = Literal["rgb", "edges", "text"]


@dataclass(frozen=True, slots=True)
class Feature:
    """What a feature is computed from, and by which model."""

    model: Literal["dreamsim", "clip"]
    input: Input


FEATURES: dict[str, Feature] = {
    "dreamsim": Feature("dreamsim", "rgb"),
    "dreamsim_edges": Feature("dreamsim", "edges"),
    "clip_image": Feature("clip", "rgb"),
    "clip_text": Feature("clip", "text"),
}


class ModelScorer:
    """Loads models on first use (or ``load``), and embeds inputs in merged batches."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._models: dict[str, Any] = {}
        self._batchers: dict[str, Batcher[Any, np.ndarray]] = {}
        self._device: Any = None
        self._closed = False

    # configuration ------------------------------------------------------------------------------
    def configured(self, model: str) -> bool:
        s = self.settings
        return (s.dreamsim_dir if model == "dreamsim" else s.clip_checkpoint) is not None

    def check(self, features: Sequence[str]) -> None:
        """Fail fast: each feature's model is configured and its files exist (no loading).

        Raises:
            UnavailableComponentError: the model's setting is unset.
            MissingWeightsError: a configured weight file is missing.
        """
        s = self.settings
        for model in sorted({FEATURES[f].model for f in features}):
            self._require_configured(model)
            if model == "dreamsim":
                assert s.dreamsim_dir is not None
                require(s.dreamsim_dir, dreamsim_files(s.dreamsim_type), model="DreamSim", setting="RLRF_DREAMSIM_DIR")
            else:
                assert s.clip_checkpoint is not None
                require_file(s.clip_checkpoint, model="CLIP", setting="RLRF_CLIP_CHECKPOINT", source="open_clip")

    def configured_features(self) -> list[str]:
        return [name for name, feature in FEATURES.items() if self.configured(feature.model)]

    def load(self, features: Sequence[str] | None = None) -> None:
        """Load the models behind ``features`` (default: every configured one) now, not on first use."""
        for model in sorted({FEATURES[f].model for f in (features or self.configured_features())}):
            self._model(model)

    # embedding ------------------------------------------------------------------------------------
    def embed(self, inputs: Mapping[str, Sequence[Any]]) -> dict[str, np.ndarray]:
        """Embed several features' inputs at once; every batcher sees its share before anyone waits.

        Returns ``{feature: float32 array (N, D)}`` of unit-length rows.
        """
        # Only the settings here: file checks belong to start-up (``check``) and to loading, not to
        # every batch of a training step.
        for model in {FEATURES[f].model for f in inputs}:
            self._require_configured(model)
        futures = {
            name: self._batcher(name).submit(_prepare(FEATURES[name].input, items)) for name, items in inputs.items()
        }
        return {name: _stack(future.result()) for name, future in futures.items()}

    def close(self) -> None:
        with self._lock:
            self._closed = True
            batchers, self._batchers = list(self._batchers.values()), {}
        for batcher in batchers:
            batcher.close()

    # plumbing -----------------------------------------------------------------------------------
    def _require_configured(self, model: str) -> None:
        if not self.configured(model):
            setting = "RLRF_DREAMSIM_DIR" if model == "dreamsim" else "RLRF_CLIP_CHECKPOINT"
            raise UnavailableComponentError(f"{model} is not configured on this server: set {setting}")

    def _batcher(self, feature: str) -> Batcher[Any, np.ndarray]:
        spec = FEATURES[feature]
        key = f"{spec.model}:{'text' if spec.input == 'text' else 'image'}"  # rgb and edges share a batcher
        with self._lock:
            if self._closed:
                raise RuntimeError("the model scorer is closed")
            batcher = self._batchers.get(key)
            if batcher is None:
                batcher = Batcher(
                    self._forward_fn(spec),
                    max_batch=self.settings.model_max_batch,
                    max_wait_s=self.settings.model_max_wait_ms / 1e3,
                    name=key,
                )
                self._batchers[key] = batcher
        return batcher

    def _forward_fn(self, spec: Feature) -> Any:
        import torch

        def images(batch: list[np.ndarray]) -> list[np.ndarray]:
            model = self._model(spec.model)
            tensor = torch.from_numpy(np.stack(batch))
            out = model.embed(tensor) if spec.model == "dreamsim" else model.embed_images(tensor)
            return list(out.cpu().numpy())

        def texts(batch: list[str]) -> list[np.ndarray]:
            return list(self._model("clip").embed_texts(batch).cpu().numpy())

        return texts if spec.input == "text" else images

    def _model(self, model: str) -> Any:
        with self._lock:
            loaded = self._models.get(model)
            if loaded is not None:
                return loaded
            from services.reward_api.models._device import resolve_device

            s = self.settings
            self._device = self._device or resolve_device(s.device)
            if model == "dreamsim":
                from services.reward_api.models.dreamsim import load_dreamsim

                assert s.dreamsim_dir is not None
                loaded = load_dreamsim(s.dreamsim_dir, s.dreamsim_type, self._device)
            else:
                from services.reward_api.models.clip import load_clip

                assert s.clip_checkpoint is not None
                loaded = load_clip(s.clip_checkpoint, s.clip_model, s.clip_model_config, self._device)
            self._models[model] = loaded
            return loaded


def _prepare(kind: Input, items: Sequence[Any]) -> list[Any]:
    """Canvas arrays to what the models take: RGB HxWx3 uint8 (edge maps repeated on 3 channels)."""
    if kind == "text":
        return [str(item) for item in items]
    if kind == "edges":
        return [np.repeat(np.asarray(e, np.uint8)[:, :, None], 3, axis=2) for e in items]
    return [np.ascontiguousarray(np.asarray(image, np.uint8)[:, :, ::-1]) for image in items]  # BGR -> RGB


def _stack(rows: list[np.ndarray]) -> np.ndarray:
    return np.stack(rows).astype(np.float32, copy=False) if rows else np.zeros((0, 0), np.float32)

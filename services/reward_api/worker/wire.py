"""JSON forms of what crosses Redis: render jobs, worker verdicts, reference canvases.

JSON rather than pickle: the broker is a network service, and nothing read from it should be able
to run code in the API process or a worker.
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from services.reward_api import png
from services.reward_api.core.results import Status
from services.reward_api.guards import Structure
from services.reward_api.sandbox import TaskCrash, TaskDeadline, TaskError, TaskFailure, TaskStalled, TaskTimeout
from services.reward_api.scoring import Outcome, RenderJob
from services.reward_api.svg.policy import PolicyLimits

_FAILURES: dict[str, type[TaskFailure]] = {
    cls.__name__: cls for cls in (TaskTimeout, TaskCrash, TaskError, TaskDeadline, TaskStalled)
}


def job_to_wire(job: RenderJob) -> dict[str, Any]:
    data = asdict(job)
    data["font_file"] = str(job.font_file)
    return data


def job_from_wire(data: dict[str, Any]) -> RenderJob:
    return RenderJob(
        **{
            **data,
            "font_file": Path(data["font_file"]),
            "limits": PolicyLimits(**data["limits"]),
            "image_components": tuple(data["image_components"]),
            "reference_size": tuple(data["reference_size"]),
            "return_images": tuple(data.get("return_images", ())),
        }
    )


def outcome_to_wire(outcome: Outcome | TaskFailure) -> dict[str, Any]:
    if isinstance(outcome, TaskFailure):
        kind = type(outcome).__name__ if type(outcome).__name__ in _FAILURES else "TaskError"
        return {"failure": kind, "detail": str(outcome)}
    return {
        "status": outcome.status.value,
        "components": outcome.components,
        "flags": outcome.flags,
        "detail": outcome.detail,
        "images": {kind: b64(png.encode(image)) for kind, image in outcome.images.items()},
        # The guards' counts travel too: without them the API would parse every SVG a second time.
        "structure": None if outcome.structure is None else asdict(outcome.structure),
    }


def outcome_from_wire(data: dict[str, Any]) -> Outcome | TaskFailure:
    if "failure" in data:
        return _FAILURES.get(data["failure"], TaskError)(data["detail"])
    images = {kind: png.decode(unb64(encoded)) for kind, encoded in data.get("images", {}).items()}
    counts = data.get("structure")
    structure = None if counts is None else Structure(**counts)
    return Outcome(Status(data["status"]), data["components"], data["flags"], data["detail"], images, structure)


def inputs_to_wire(inputs: Mapping[str, Sequence[Any]]) -> dict[str, list[str]]:
    """Model inputs: canvas arrays as PNG (lossless, ~10x smaller than raw for renders), texts as is."""
    return {
        feature: [item if isinstance(item, str) else b64(png.encode(item)) for item in items]
        for feature, items in inputs.items()
    }


def inputs_from_wire(data: dict[str, list[str]], texts: Collection[str]) -> dict[str, list[Any]]:
    return {
        feature: list(items) if feature in texts else [png.decode(unb64(item)) for item in items]
        for feature, items in data.items()
    }


def array_to_wire(array: np.ndarray) -> dict[str, Any]:
    array = np.ascontiguousarray(array, dtype=np.float32)
    return {"shape": list(array.shape), "float32_b64": b64(array.tobytes())}


def array_from_wire(data: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(unb64(data["float32_b64"]), np.float32).reshape(data["shape"])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text)

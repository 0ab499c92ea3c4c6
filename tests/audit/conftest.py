"""Helpers for the audit tests: real renders through the session pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from services.reward_api.core.results import RolloutResult
from services.reward_api.core.schemas import ScoreRequest
from services.reward_api.pipeline import Pipeline


class Scorer:
    """Score candidates against a reference through the real pipeline, renders included."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def target(self, svg: str) -> np.ndarray:
        prepared = self.pipeline.prepare_reference(ScoreRequest(reference={"svg": svg}, completions=["x"]).reference)
        assert prepared.canvas is not None
        return prepared.canvas.image

    def score(
        self, reference: str, candidates: list[str], *, profile: str = "rlrf-im2svg", task: str = "im2svg"
    ) -> list[tuple[RolloutResult, np.ndarray | None]]:
        group, capture = self.pipeline.score_group_captured(
            ScoreRequest(reference={"svg": reference}, completions=candidates, profile=profile, task=task)
        )
        return list(zip(group.results, capture.rollouts))


@pytest.fixture(scope="session")
def scorer(pipeline: Pipeline) -> Scorer:
    return Scorer(pipeline)

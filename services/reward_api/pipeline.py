"""One rollout group in, one result per rollout out: the function every entry point calls.

    ScoreRequest ─► prepare reference (references.py: cached by content hash) ─► extract SVG per completion
                 ─► backend.score: policy ▸ render ▸ image components, in sandboxed workers
                 ─► backend.embed: learned-model features of the renders, batched across groups
                 ─► judge proxy: VLM verdicts on the renders
                 ─► length ▸ weights ▸ GroupResult

Embedded and distributed modes differ only in the ``Backend`` that runs the sandboxed and the
model work: ``LocalBackend`` uses this process's ``WorkerPool`` and ``ModelScorer``; the Celery
backend sends the same functions to CPU and GPU workers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, Protocol

import numpy as np

from services.reward_api.components import COMPONENTS, Canvas, Sample
from services.reward_api.components.base import Requirement
from services.reward_api.components.length import char_length
from services.reward_api.core.errors import (
    BackendError,
    BadReferenceError,
    ConfigError,
    RewardError,
    UnavailableComponentError,
)
from services.reward_api.core.results import Capture, GroupResult, RolloutResult, Status
from services.reward_api.core.schemas import ReferenceIn, ScoreRequest
from services.reward_api.core.settings import Settings
from services.reward_api.failures import failure_status
from services.reward_api.guards import cap, collapse, combined, shares, structure
from services.reward_api.judging import JudgeStage
from services.reward_api.models.scorer import FEATURES, ModelScorer
from services.reward_api.profiles import combine, failure_components, resolve_weights
from services.reward_api.references import PreparedReference, References
from services.reward_api.sandbox import TaskFailure, WorkerPool
from services.reward_api.scoring import (
    Outcome,
    ReferenceRender,
    RenderJob,
    policy_limits,
    render_job,
    render_reference,
    score_svg,
)
from services.reward_api.svg.extract import extract_svg
from services.reward_api.svg.policy import PolicyLimits


class Backend(Protocol):
    """Where the sandboxed work runs. Failures come back as ``TaskFailure`` values, not raised."""

    def render_reference(
        self, svg: str, job: RenderJob, *, deadline: float | None = None
    ) -> ReferenceRender | TaskFailure: ...

    def score(
        self, key: str, reference: Canvas | None, svgs: Sequence[str], job: RenderJob, *, deadline: float | None = None
    ) -> list[Outcome | TaskFailure]:
        """One outcome per SVG; ``deadline`` (``time.monotonic()``): what has not started by then fails."""
        ...

    def embed(self, inputs: Mapping[str, Sequence[Any]]) -> dict[str, np.ndarray]:
        """Learned-model features ``{feature: (N, D) array}`` of canvas arrays or texts.

        Raises:
            BackendError: the model workers failed (status ``error`` for the rollouts concerned).
            UnavailableComponentError: a feature's model is not configured.
        """
        ...

    def readiness(self) -> dict[str, object]:
        """``{"ready": bool, ...}`` for ``/readyz``."""
        ...

    def queue_depth(self) -> int | None:
        """Work waiting for a worker; ``None`` when it cannot be read right now."""
        ...

    def close(self) -> None: ...


class LocalBackend:
    """Embedded mode: the sandboxed work runs in this process's worker pool."""

    def __init__(self, pool: WorkerPool, models: ModelScorer | None = None) -> None:
        self.pool = pool
        self.models = models

    def readiness(self) -> dict[str, object]:
        ready = 0 if self.pool.closed else self.pool.ready_workers
        return {"ready": ready == self.pool.size, "render_workers": ready, "queued": self.queue_depth()}

    def embed(self, inputs: Mapping[str, Sequence[Any]]) -> dict[str, np.ndarray]:
        if self.models is None:
            raise UnavailableComponentError("this backend runs no learned models")
        try:
            return self.models.embed(inputs)
        except RewardError:
            raise
        except Exception as exc:  # a model that raised (out of memory, a bug): ours, not the rollout's
            raise BackendError(f"model scoring failed: {type(exc).__name__}: {exc}") from exc

    def queue_depth(self) -> int | None:
        return self.pool.queued

    def close(self) -> None:
        self.pool.close()
        if self.models is not None:
            self.models.close()

    def render_reference(
        self, svg: str, job: RenderJob, *, deadline: float | None = None
    ) -> ReferenceRender | TaskFailure:
        result: ReferenceRender | TaskFailure = self.pool.run(
            partial(render_reference, job=job), [svg], deadline=deadline
        )[0]
        return result

    def score(
        self,
        key: str | None,
        reference: Canvas | None,
        svgs: Sequence[str],
        job: RenderJob,
        *,
        deadline: float | None = None,
    ) -> list[Outcome | TaskFailure]:
        # key None (a CPU worker's text-only chunk): no reference context to keep on the workers
        return self.pool.run(partial(score_svg, job=job), svgs, context_key=key, context=reference, deadline=deadline)


class Pipeline:
    """Scores rollout groups with one settings object and one backend.

    >>> with Pipeline.embedded(Settings()) as pipeline:           # doctest: +SKIP
    ...     result = pipeline.score_group(ScoreRequest(reference={"svg": ref}, completions=outs))
    """

    def __init__(self, settings: Settings, backend: Backend) -> None:
        check_settings(settings)
        self.settings = settings
        self.backend = backend
        self.references = References(settings, backend)
        self._judge = JudgeStage(settings)
        self._limits = policy_limits(settings)

    @classmethod
    def embedded(cls, settings: Settings) -> Pipeline:
        """A pipeline with its own local worker pool (close it, or use ``with``)."""
        check_settings(settings)  # before any worker is spawned
        models = ModelScorer(settings)
        models.check(models.configured_features())  # a configured model with a missing file fails here
        return cls(settings, LocalBackend(render_pool(settings), models))

    @classmethod
    def distributed(cls, settings: Settings) -> Pipeline:
        """A pipeline whose sandboxed work runs on ``rlrf worker`` processes via Celery and Redis."""
        from services.reward_api.worker.backend import CeleryBackend

        return cls(settings, CeleryBackend(settings))

    def close(self) -> None:
        self.backend.close()
        self._judge.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # the pipeline -----------------------------------------------------------------------------
    def score_group(self, request: ScoreRequest) -> GroupResult:
        """Score every completion of one group against its reference, in completion order.

        Raises:
            BadReferenceError, BackendError, UnknownProfileError, UnavailableComponentError: as
                ``score_group_captured``.
        """
        return self._score_group(request, capture=False)[0]

    def score_group_captured(self, request: ScoreRequest) -> tuple[GroupResult, Capture]:
        """``score_group``, with every render brought back from the workers (the dashboard, thumbnails).

        Raises:
            BadReferenceError: the reference cannot be rendered or decoded (the caller's data), or
                lacks what a weighted component compares against.
            BackendError: the workers could not render the reference (our failure, not the data's).
            UnknownProfileError: unknown profile or component in ``weights``.
            UnavailableComponentError: a weighted component's model or judge is not configured.
        """
        result, capture = self._score_group(request, capture=True)
        assert capture is not None
        return result, capture

    def _score_group(self, request: ScoreRequest, *, capture: bool) -> tuple[GroupResult, Capture | None]:
        started = time.perf_counter()
        weights = resolve_weights(request.profile or self.settings.profile, request.weights, request.step)
        components = [COMPONENTS[name] for name in weights]
        reference = self.prepare_reference(request.reference, tokens=request.reference_tokens)
        _check_reference(components, reference, request)
        features = sorted({f for c in components if c.stage == "model" for f in c.features})
        # Text is cut whenever a text reward is in play, whatever the declared task: otherwise writing
        # the prompt as <text> wins clip_text (or a text judge).
        text_task = (
            request.task == "text2svg"
            or reference.canvas is None
            or any(c.strips_text and weights[c.name] != 0.0 for c in components)
        )
        judged = any(c.stage == "judge" for c in components)
        rubric = self._judge.rubric(request.task == "text2svg" or reference.canvas is None)
        if judged:
            self._judge.check(rubric, has_image=reference.canvas is not None, has_prompt=bool(request.reference.text))
        prepared = time.perf_counter()

        extractions = [extract_svg(text, max_chars=self.settings.max_completion_chars) for text in request.completions]
        to_score = [i for i, ex in enumerate(extractions) if ex.svg is not None]
        images = {FEATURES[f].input for f in features} | ({"rgb"} if judged or capture else set())
        job = self._job(
            reference,
            tuple(c.name for c in components if c.stage == "render"),
            return_images=tuple(sorted(images)),
            strip_text=text_task,
        )
        # The group's own deadline: a group that cannot finish in time gives its neighbours their workers back.
        deadline = time.monotonic() + self.settings.request_deadline_s - (prepared - started)
        outcomes = self.backend.score(
            reference.key, reference.canvas, [extractions[i].svg or "" for i in to_score], job, deadline=deadline
        )
        by_index = dict(zip(to_score, outcomes))
        ok_by_index = {i: o for i, o in by_index.items() if isinstance(o, Outcome) and o.status is Status.ok}
        rendered = list(ok_by_index)  # in completion order
        scored = time.perf_counter()

        # Learned models and the judge see only the renders that succeeded. Their failures are ours:
        # the rollouts concerned get status error and reward null, never a score.
        ok_outcomes = list(ok_by_index.values())
        cand_features, ref_features, model_error = self._model_features(
            features, components, reference, request, ok_outcomes
        )
        verdicts: list[Any] = [None] * len(rendered)
        if judged:
            verdicts = self._judge.judge(rubric, request, reference, [o.images["rgb"] for o in ok_outcomes])
        extra = dict(zip(rendered, zip(range(len(rendered)), verdicts)))
        modelled = time.perf_counter()

        prompt: frozenset[Requirement] = frozenset({"prompt"}) if request.reference.text else frozenset()
        available = reference.carries | prompt
        applicable = [c.name for c in components if c.applies(available)]
        penalty, penalty_components = combine(failure_components(applicable), weights)
        results: list[RolloutResult] = []
        for i, extraction in enumerate(extractions):
            outcome = by_index.get(i)
            if outcome is None:
                results.append(
                    RolloutResult(
                        reward=penalty,
                        components=penalty_components,
                        status=extraction.status,
                        flags=[extraction.status.value],
                    )
                )
            elif isinstance(outcome, TaskFailure):
                results.append(_infrastructure_or_render_failure(outcome, penalty, penalty_components))
            elif outcome.status is not Status.ok:
                results.append(
                    RolloutResult(
                        reward=penalty,
                        components=penalty_components,
                        status=outcome.status,
                        flags=outcome.flags,
                        detail=outcome.detail,
                    )
                )
            else:
                row, verdict = extra[i]
                failure = model_error or self._judge.failure(verdict)
                if failure is not None:
                    results.append(
                        RolloutResult(
                            reward=None, components={}, status=Status.error, flags=outcome.flags, detail=failure
                        )
                    )
                    continue
                svg = extraction.svg or ""
                length = request.completion_tokens[i] if request.completion_tokens else char_length(svg)
                values: dict[str, float | None] = dict(outcome.components)
                candidate = Sample(
                    None, length, {f: cand_features[f][row] for f in cand_features}, self._judge.score(verdict)
                )
                ref_sample = Sample(None, reference.length, ref_features)
                try:
                    for component in components:
                        if component.stage != "render":
                            values[component.name] = component.compute(candidate, ref_sample)
                except ValueError as exc:  # features of two different models (GPU workers mid-rollout)
                    detail = f"model features do not match the reference's: {exc}"
                    results.append(RolloutResult(reward=None, components={}, status=Status.error, detail=detail))
                    continue
                # guards.py: structural guards (and a collapse the components raised) cap credit, never reject.
                candidate_structure = outcome.structure or structure(extraction.svg or "")
                raised = collapse(length, reference.length)
                guarded = shares(candidate_structure, reference.structure, raised)
                flags = list(outcome.flags)
                flags += [g for g in (*guarded, *raised) if g not in flags]
                flags += self._judge.flags(verdict)
                if guarded:  # capped fidelity credit, graded by the product of the guards' shares
                    t = combined(guarded)
                    values = {
                        k: cap(v, COMPONENTS[k].lower, t) if v is not None and COMPONENTS[k].capped else v
                        for k, v in values.items()
                    }
                total, applied = combine(values, weights)
                results.append(RolloutResult(reward=total, components=applied, status=Status.ok, flags=flags))
        done = time.perf_counter()
        timings = {
            "reference": 1e3 * (prepared - started),
            "render_score": 1e3 * (scored - prepared),
            "total": 1e3 * (done - started),
        }
        if features or judged:
            timings["models_judge"] = 1e3 * (modelled - scored)
        group = GroupResult(results=results, timings_ms=timings)
        if not capture:
            return group, None
        renders = [
            o.images.get("rgb") if isinstance(o := by_index.get(i), Outcome) else None for i in range(len(results))
        ]
        return group, Capture(reference.canvas.image if reference.canvas is not None else None, renders)

    def _model_features(
        self,
        features: list[str],
        components: list[Any],
        reference: PreparedReference,
        request: ScoreRequest,
        outcomes: list[Outcome],
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], str | None]:
        """Candidate features (one row per outcome), reference features, or the infrastructure error."""
        if not features:
            return {}, {}, None
        wanted = sorted({f for c in components if c.stage == "model" for f in c.reference_features})
        try:
            ref = self.references.features(reference, request.reference.text, wanted)
            inputs = {f: [o.images[FEATURES[f].input] for o in outcomes] for f in features}
            cand = self.backend.embed(inputs) if outcomes else {}
        except BackendError as exc:
            return {}, {}, f"model scoring failed: {exc}"
        if any(len(cand[f]) != len(outcomes) for f in features):  # rows must never shift between rollouts
            return {}, {}, "model scoring failed: the backend returned the wrong number of embeddings"
        return cand, ref, None

    def prepare_reference(self, reference: ReferenceIn, *, tokens: int | None = None) -> PreparedReference:
        """Render or decode the reference once (``References.prepare``); later groups reuse it."""
        return self.references.prepare(reference, tokens=tokens)

    # helpers ----------------------------------------------------------------------------------
    def _job(
        self,
        reference: PreparedReference | None,
        image_components: tuple[str, ...],
        limits: PolicyLimits | None = None,
        *,
        return_images: tuple[str, ...] = (),
        strip_text: bool = False,
    ) -> RenderJob:
        return render_job(
            self.settings,
            limits=limits or self._limits,
            image_components=image_components,
            reference_size=reference.intrinsic_size if reference else (0.0, 0.0),
            reference_blank=reference.blank if reference else False,
            return_images=return_images,
            strip_text=strip_text,
        )


def render_pool(settings: Settings) -> WorkerPool:
    """The sandboxed render processes that ``settings`` configure (embedded mode, CPU workers, eval)."""
    return WorkerPool(
        workers=settings.workers,
        timeout_s=settings.render_timeout_s,
        memory_mb=settings.worker_memory_mb,
        chunk_size=settings.chunk_size,
    )


def check_settings(settings: Settings) -> None:
    """Fail fast on settings that would make every rollout fail (a missing font file)."""
    if not settings.font_file.is_file():
        raise ConfigError(
            f"font_file {settings.font_file} does not exist: install fonts-dejavu-core (scripts/system-deps.sh) "
            "or point RLRF_FONT_FILE at a .ttf"
        )


def _check_reference(components: Sequence[Any], reference: PreparedReference, request: ScoreRequest) -> None:
    """A component that compares against the reference image needs one (Text2SVG groups may lack it)."""
    if reference.canvas is not None:
        return
    needs_image = [c.name for c in components if "image" in c.requires]
    if needs_image:
        raise BadReferenceError(
            f"components {', '.join(needs_image)} compare against a reference image: send reference.svg or "
            "reference.image_b64, or use a text profile (rlrf-text2svg)"
        )


def _infrastructure_or_render_failure(
    failure: TaskFailure, penalty: float, components: dict[str, float]
) -> RolloutResult:
    """A renderer that hung or died is the SVG's fault; anything else is ours (reward null)."""
    status = failure_status(failure)
    if status is not Status.error:
        return RolloutResult(
            reward=penalty, components=components, status=status, flags=[status.value], detail=str(failure)
        )
    return RolloutResult(
        reward=None, components={}, status=Status.error, flags=[], detail=f"{type(failure).__name__}: {failure}"
    )

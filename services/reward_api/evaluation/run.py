"""``rlrf eval``'s run: render every prediction and reference in the sandbox, then compute the metrics.

Predictions are untrusted model output. Each is extracted (``extract_svg``) and rendered by the
service's own sandboxed path (``WorkerPool`` running ``scoring.score_svg`` with the policy), so a
hostile SVG comes back as a status, never as a crash or a file read. The service's own rules map
a failed render to its status (``failures.failure_status``), decide what is blank
(``scoring.is_blank``) and call the judge (``judging.JudgeStage``). A sample whose prediction
cannot be rendered is a failure in the ``status`` column and gets no metric values; the means are
taken over the ``ok`` samples only and say over how many, next to the failure rate.

Metric definitions: ``image_metrics.py`` (MSE, SSIM, code efficiency), ``models/lpips.py``,
``models/dino.py``, ``models/clip.py``; the conventions are written into every report's metadata.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from services.reward_api import png
from services.reward_api.components import Canvas
from services.reward_api.core.errors import BadReferenceError
from services.reward_api.core.results import Status
from services.reward_api.core.schemas import ReferenceIn
from services.reward_api.core.settings import Settings
from services.reward_api.evaluation.config import EvalOptions, EvalSettings, Task
from services.reward_api.evaluation.inputs import Reference
from services.reward_api.evaluation.metrics import Metrics
from services.reward_api.evaluation.report import difference_image
from services.reward_api.evaluation.summary import EvalReport, counts, means, primary_metric
from services.reward_api.failures import failure_status
from services.reward_api.image_metrics import code_efficiency, mean_squared_error, structural_similarity
from services.reward_api.pipeline import LocalBackend, Pipeline, check_settings, render_pool
from services.reward_api.sandbox import TaskCrash, TaskFailure, TaskTimeout
from services.reward_api.scoring import (
    Outcome,
    ReferenceRender,
    is_blank,
    render_job,
    render_reference,
    score_svg,
)
from services.reward_api.svg.extract import Extraction, extract_svg

__all__ = ["evaluate"]

_CHUNK = 64  # samples rendered and scored together: bounds memory on any dataset size
Row = dict[str, Any]


def evaluate(
    predictions: dict[str, str],
    references: dict[str, Reference],
    settings: Settings,
    options: EvalOptions,
    config: EvalSettings | None = None,
) -> EvalReport:
    """Render every prediction and reference in the sandbox and compute the task's metrics.

    Args:
        predictions: ``{id: raw model output}``.
        references: ``{id: Reference}``; every reference is a sample (a missing prediction is a failure).
        settings: canvas, renderer, sandbox limits, device, CLIP and the judge proxy.
        options: task, tokenizer, judge, HTML sort metric.
        config: the LPIPS and DINO weight paths; ``None``: ``EvalSettings()`` (the ``RLRF_*`` environment).

    Returns:
        The report; ``rows`` in id order.

    Raises:
        MissingWeightsError: a configured weight file is missing (before anything is rendered).
        ConfigError: a weight file of the wrong kind, or a missing font.
        InputError: an unknown ``sort_by`` or a ``tokenizer`` that is not a directory.
    """
    from tqdm import tqdm

    check_settings(settings)
    config = EvalSettings() if config is None else config
    metrics = Metrics.load(settings, config, options, references)  # fails on a missing file before any rendering
    try:
        primary_metric(options.task, metrics.columns, options.sort_by)  # an unknown --sort-by fails now
    except BaseException:
        metrics.close()
        raise
    ids = sorted(references)
    unmatched = sorted(set(predictions) - set(references))
    rows: list[Row] = []
    report = EvalReport(rows, {}, {}, {})
    started = time.perf_counter()
    try:
        with (
            _Sandbox(settings) as sandbox,
            tqdm(total=len(ids), desc="rlrf eval", unit="sample", file=sys.stderr, disable=not options.progress) as bar,
        ):
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                rows += _evaluate_chunk(chunk, predictions, references, sandbox, metrics, settings, options, report)
                bar.update(len(chunk))
    finally:
        metrics.close()
    report.means = means(rows, metrics.columns)
    report.counts = counts(rows, unmatched)
    report.metadata = _metadata(settings, config, options, metrics, unmatched, time.perf_counter() - started)
    return report


class _Sandbox:
    """The service's sandboxed render path: a ``WorkerPool`` and the policy, for both sides."""

    def __init__(self, settings: Settings) -> None:
        # blank_fraction 0: a blank prediction is a drawing to score here; it is flagged, not failed.
        job = render_job(settings, blank_fraction=0.0, return_images=("rgb",))
        self.pool = render_pool(settings)
        self.score_prediction = partial(score_svg, job=job)
        # Ground truth may embed rasters, as in the service; the rest of the policy still applies.
        self.render_reference = partial(
            render_reference, job=replace(job, limits=replace(job.limits, reject_embedded_raster=False))
        )
        self.pipeline = Pipeline(settings, LocalBackend(self.pool))  # decodes image references as the service does

    def __enter__(self) -> _Sandbox:
        return self

    def __exit__(self, *_: object) -> None:
        self.pool.close()


def _evaluate_chunk(
    ids: Sequence[str],
    predictions: dict[str, str],
    references: dict[str, Reference],
    sandbox: _Sandbox,
    metrics: Metrics,
    settings: Settings,
    options: EvalOptions,
    report: EvalReport,
) -> list[Row]:
    rows: dict[str, Row] = {key: {"id": key, "status": "ok", "detail": None, "flags": []} for key in ids}
    ref_images = _reference_images(ids, references, sandbox, metrics.task, rows)
    extractions: dict[str, Extraction] = {}
    for key in ids:  # a broken reference outranks anything the prediction did: the row is not scored
        if key not in predictions:
            if rows[key]["status"] == "ok":
                _fail(rows[key], "missing", "no prediction with this id")
            continue
        extraction = extractions[key] = extract_svg(predictions[key], max_chars=settings.max_completion_chars)
        if rows[key]["status"] == "ok" and extraction.status is not Status.ok:
            why = (
                "no <svg> element in the output"
                if extraction.status is Status.no_svg
                else "the final <svg> never closes"
            )
            _fail(rows[key], extraction.status.value, why)
    to_render = [key for key in ids if rows[key]["status"] == "ok"]
    outcomes = sandbox.pool.submit(sandbox.score_prediction, [extractions[k].svg for k in to_render])
    pred_images: dict[str, np.ndarray] = {}
    for key, future in zip(to_render, outcomes):
        _read_outcome(future, rows[key], pred_images, key)
    ok = [key for key in ids if rows[key]["status"] == "ok"]

    # Image metrics: every ok row whose reference has an image.
    with_image = [key for key in ok if key in ref_images]
    if with_image:
        pred = np.stack([pred_images[k] for k in with_image])
        ref = np.stack([ref_images[k] for k in with_image])
        values = {"mse": mean_squared_error(pred, ref), "ssim": structural_similarity(pred, ref)}
        pred_rgb, ref_rgb = pred[..., ::-1], ref[..., ::-1]
        if metrics.lpips is not None:
            values["lpips"] = metrics.lpips.distance(pred_rgb, ref_rgb)
        if metrics.dino is not None:
            values["dino"] = metrics.dino.score(pred_rgb, ref_rgb)
        for i, key in enumerate(with_image):
            for name, array in values.items():
                rows[key][name] = float(np.asarray(array)[i])
            ref_blank = is_blank(Canvas(ref_images[key]), settings.blank_fraction)
            if is_blank(Canvas(pred_images[key]), settings.blank_fraction) and not ref_blank:
                rows[key]["flags"].append("blank")

    # Text2SVG: CLIP score and the judge, against the prompt.
    prompts = {key: text for key in ok if (text := references[key].text)}
    if metrics.clip is not None and prompts:
        import torch

        images = torch.from_numpy(np.stack([pred_images[k][..., ::-1] for k in prompts]).copy())
        texts = metrics.clip.embed_texts(list(prompts.values()))
        cos = (metrics.clip.embed_images(images) * texts).sum(dim=1)
        for key, value in zip(prompts, cos.tolist()):
            rows[key]["clip_score"] = 100.0 * max(value, 0.0)
    if metrics.judge is not None and prompts:
        _judge(metrics, settings, {key: (pred_images[key], prompt) for key, prompt in prompts.items()}, rows)

    # Code efficiency: the extracted <svg> element on both sides.
    for key in ok:
        ref_svg = references[key].svg
        if ref_svg is None:
            continue
        pred_len = metrics.count(extractions[key].svg or "")
        ref_len = metrics.count(extract_svg(ref_svg).svg or ref_svg)
        rows[key].update(pred_length=pred_len, ref_length=ref_len, code_efficiency=code_efficiency(pred_len, ref_len))

    if options.keep_renders:
        for key in ids:
            ref_image, pred_image = ref_images.get(key), pred_images.get(key)
            diff = None if ref_image is None or pred_image is None else difference_image(pred_image, ref_image)
            report.renders[key] = (_png(ref_image), _png(pred_image), _png(diff))
            shown: dict[str, str] = {}
            if prompt := references[key].text:
                shown["prompt"] = prompt
            if key in predictions:  # the SVG it answered with, else the raw output (prose, a cut block)
                shown["prediction"] = extractions[key].svg or predictions[key]
            report.texts[key] = shown
    fixed = ("id", "status", "detail", "flags", *metrics.columns)  # every row: these keys in this order
    return [
        {name: rows[key].get(name) for name in fixed} | {k: v for k, v in rows[key].items() if k not in fixed}
        for key in ids
    ]


def _reference_images(
    ids: Sequence[str], references: dict[str, Reference], sandbox: _Sandbox, task: Task, rows: dict[str, Row]
) -> dict[str, np.ndarray]:
    """BGR canvases of the references that have an image; a reference that fails marks its row."""
    images: dict[str, np.ndarray] = {}
    svg_keys = [k for k in ids if references[k].svg is not None]
    futures: list[Future[ReferenceRender]] = sandbox.pool.submit(
        sandbox.render_reference, [references[k].svg for k in svg_keys]
    )
    for key in ids:
        ref = references[key]
        if ref.svg is None and ref.image_b64 is not None:
            try:
                prepared = sandbox.pipeline.prepare_reference(ReferenceIn(image_b64=ref.image_b64))
                if prepared.canvas is not None:  # always, for an image reference
                    images[key] = prepared.canvas.image
            except BadReferenceError as exc:
                _fail(rows[key], "reference_error", str(exc))
    for key, future in zip(svg_keys, futures):
        try:
            rendered = future.result()
        except (TaskTimeout, TaskCrash) as exc:  # the reference itself hangs or kills renderers
            _fail(rows[key], "reference_error", f"reference could not be rendered: {type(exc).__name__}: {exc}")
            continue
        except TaskFailure as exc:  # broken workers, a closed pool: ours, not the reference's
            _fail(rows[key], "error", f"{type(exc).__name__}: {exc}")
            continue
        if rendered.image is None:
            _fail(rows[key], "reference_error", f"reference SVG is {rendered.status.value}: {rendered.detail}")
        else:
            images[key] = rendered.image
    for key in ids:
        ref = references[key]
        if task == "im2svg" and key not in images and rows[key]["status"] == "ok":
            _fail(rows[key], "reference_error", "im2svg needs a reference image: svg or image_b64 (foo.svg/png/jpg)")
        if task == "text2svg" and not ref.text and rows[key]["status"] == "ok":
            _fail(rows[key], "reference_error", "text2svg needs the prompt: text (foo.txt)")
    return images


def _read_outcome(future: Future[Outcome], row: Row, images: dict[str, np.ndarray], key: str) -> None:
    try:
        outcome = future.result()
    except TaskFailure as exc:  # hung or crashed renderers are the model's; anything else (a closed pool) ours
        status = failure_status(exc)
        _fail(row, status.value, str(exc) if status is not Status.error else f"{type(exc).__name__}: {exc}")
        return
    row["flags"] = list(outcome.flags)
    if outcome.status is not Status.ok:
        _fail(row, outcome.status.value, outcome.detail)
        return
    images[key] = outcome.images["rgb"]


def _fail(row: Row, status: str, detail: str | None) -> None:
    row["status"] = status
    row["detail"] = detail


def _judge(
    metrics: Metrics, settings: Settings, items: dict[str, tuple[np.ndarray, str]], rows: dict[str, Row]
) -> None:
    """One judge call per sample (each has its own prompt), a few at a time. Failures stay null."""
    judge = metrics.judge
    assert judge is not None
    rubric = settings.judge_rubric_text2svg

    def one(item: tuple[np.ndarray, str]) -> Any:
        image, prompt = item
        (verdict,) = judge.verdicts(rubric, [image], prompt=prompt)
        return verdict

    with ThreadPoolExecutor(max_workers=4) as executor:
        for key, verdict in zip(items, executor.map(one, items.values())):
            error = judge.failure(verdict)
            rows[key]["judge"] = None if error is not None else judge.score(verdict)
            if error is not None:
                rows[key]["judge_error"] = error


def _png(image: np.ndarray | None) -> bytes | None:
    return None if image is None else png.encode(image)  # BGR, as the encoder expects


def _metadata(
    settings: Settings,
    config: EvalSettings,
    options: EvalOptions,
    metrics: Metrics,
    unmatched: list[str],
    seconds: float,
) -> dict[str, Any]:
    conventions = {
        "render": f"{settings.renderer} on a {settings.size}x{settings.size} white canvas; the prediction's root is "
        "rewritten to the canvas and checked by the service's policy first (StarVector: cairosvg at 512x512)",
        "means": "over rows with status ok and a value; failed renders are counted (failure_rate), never scored",
        "mse": "mean squared error of RGB intensities in [0, 1] over pixels and channels (StarVector compute_l2)",
        "ssim": "scikit-image structural_similarity(win_size=11, channel_axis=-1, data_range=255) on uint8 RGB: "
        "uniform window, sample covariance, K1=0.01, K2=0.03 (StarVector compute_SSIM)",
        "lpips": f"LPIPS v0.1, net={config.lpips_net}, inputs "
        + (
            "in [-1, 1] as the lpips library expects"
            if config.lpips_inputs == "standard"
            else "ImageNet-normalised as StarVector compute_LPIPS feeds them (not lpips's [-1, 1])"
        ),
        "dino": "(cos + 1) / 2 of the mean over all tokens of last_hidden_state, images through the directory's "
        "image processor (StarVector compute_dino_score, facebook/dinov2-base)",
        "clip_score": "100 * max(cos, 0) of open_clip image and prompt embeddings (CLIPScore with torchmetrics' "
        "w=100; StarVector averages the unclamped 100 * cos)",
        "judge": f"VLM judge score in [0, 1] from the judge proxy, rubric {settings.judge_rubric_text2svg}; "
        "a judge failure is null with judge_error, never 0",
        "code_efficiency": f"len(prediction) - len(reference) in {metrics.length_unit} of the extracted <svg> "
        "element (StarVector count_token_length: gen - gt); negative: shorter than the reference",
    }
    shown = set(metrics.columns) | {"render", "means"}
    return {
        "task": options.task,
        "canvas": settings.size,
        "renderer": settings.renderer,
        "length_unit": metrics.length_unit,
        "primary_metric": primary_metric(options.task, metrics.columns, options.sort_by),
        "columns": metrics.columns,
        "absent": metrics.absent,
        "weights": metrics.weights,
        "conventions": {k: v for k, v in conventions.items() if k in shown},
        "unmatched_prediction_ids": unmatched[:20],
        "seconds": round(seconds, 3),
    }

"""``rlrf eval``: the paper's metrics on a set of predictions, with a JSON file and an HTML report.

    rlrf eval --pred DIR|JSONL --ref DIR|JSONL [--task im2svg|text2svg] [--json OUT] [--html OUT]

Predictions are untrusted model output. Each is extracted (``extract_svg``) and rendered by the
service's own sandboxed path (``WorkerPool`` running ``scoring.score_svg`` with the policy), so a
hostile SVG comes back as a status, never as a crash or a file read. A sample whose prediction
cannot be rendered is a failure in the ``status`` column and gets no metric values; the means are
taken over the ``ok`` samples only and say over how many, next to the failure rate.

Pairing (documented in trainer/EVAL.md):

* a folder pairs files by stem: a prediction ``foo.svg`` or ``foo.txt`` (raw model output: prose,
  fences, ``<think>``) with a reference ``foo.svg``, ``foo.png`` or ``foo.jpg`` (the image) and/or
  ``foo.txt`` (the Text2SVG prompt);
* a JSONL file holds one object per line with an ``id``: predictions ``completion`` (raw output) or
  ``svg``; references ``svg``, ``image_b64`` and/or ``text``.

Metric definitions and conventions live in ``trainer/metrics.py`` and ``trainer/learned_metrics.py``.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np

    from services.reward_api.core.settings import Settings

__all__ = [
    "EvalOptions",
    "EvalReport",
    "Reference",
    "add_eval_parser",
    "evaluate",
    "read_predictions",
    "read_references",
    "run_eval",
]

Task = Literal["im2svg", "text2svg"]

# Statuses of a sample. The model's failures count in the failure rate; ours do not.
MODEL_FAILURES = ("missing", "no_svg", "truncated", "parse_error", "rejected", "render_timeout", "render_crash")
OUR_ERRORS = ("reference_error", "error")
IMAGE_METRICS = ("mse", "ssim", "lpips", "dino")
TEXT_METRICS = ("clip_score", "judge")
LENGTH_COLUMNS = ("code_efficiency", "pred_length", "ref_length")
# The metric the HTML report sorts by unless --sort-by says otherwise: the first one present.
PRIMARY = {"im2svg": ("mse",), "text2svg": ("clip_score", "judge", "mse")}
_PRED_SUFFIXES = (".svg", ".txt")
_IMAGE_SUFFIXES = (".svg", ".png", ".jpg", ".jpeg")
_CHUNK = 64  # samples rendered and scored together: bounds memory on any dataset size


# inputs -------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Reference:
    """One ground-truth sample: its SVG code, an image (base64 PNG/JPEG) and/or the Text2SVG prompt."""

    svg: str | None = None
    image_b64: str | None = None
    text: str | None = None


def read_predictions(source: Path) -> dict[str, str]:
    """``{id: raw model output}`` from a folder (``*.svg``/``*.txt`` by stem) or a JSONL file."""
    if source.is_dir():
        found: dict[str, str] = {}
        for path in sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in _PRED_SUFFIXES):
            if path.stem in found:
                raise SystemExit(f"rlrf: error: {source} has two predictions for {path.stem!r} (.svg and .txt)")
            found[path.stem] = _read_text(path)
        return found
    rows = {}
    for line_no, row in _jsonl(source):
        text = row.get("completion", row.get("svg"))
        if not isinstance(text, str):
            raise SystemExit(f"rlrf: error: {source}:{line_no}: a prediction needs a 'completion' or 'svg' string")
        _put(rows, _row_id(row, source, line_no), text, source, line_no)
    return rows


def read_references(source: Path) -> dict[str, Reference]:
    """``{id: Reference}`` from a folder (``foo.svg|png|jpg`` image, ``foo.txt`` prompt) or a JSONL file."""
    if source.is_dir():
        parts: dict[str, dict[str, str]] = {}
        for path in sorted(p for p in source.iterdir() if p.is_file()):
            suffix = path.suffix.lower()
            if suffix not in (*_IMAGE_SUFFIXES, ".txt"):
                continue
            entry = parts.setdefault(path.stem, {})
            if suffix == ".txt":
                entry["text"] = path.read_text(encoding="utf-8", errors="replace").strip()
                continue
            if "svg" in entry or "image_b64" in entry:
                raise SystemExit(f"rlrf: error: {source} has two reference images for {path.stem!r}")
            if suffix == ".svg":
                entry["svg"] = _read_text(path)
            else:
                entry["image_b64"] = base64.b64encode(path.read_bytes()).decode("ascii")
        return {key: Reference(**entry) for key, entry in parts.items()}
    refs: dict[str, Reference] = {}
    for line_no, row in _jsonl(source):
        fields = {k: row.get(k) for k in ("svg", "image_b64", "text")}
        if not any(isinstance(v, str) for v in fields.values()):
            raise SystemExit(f"rlrf: error: {source}:{line_no}: a reference needs 'svg', 'image_b64' or 'text'")
        ref = Reference(**{k: v for k, v in fields.items() if isinstance(v, str)})
        _put(refs, _row_id(row, source, line_no), ref, source, line_no)
    return refs


def _read_text(path: Path) -> str:
    # surrogateescape keeps undecodable bytes visible to the policy, which reports parse_error.
    return path.read_bytes().decode("utf-8", "surrogateescape")


def _jsonl(source: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if not source.is_file():
        raise SystemExit(f"rlrf: error: {source} is neither a folder nor a JSONL file")
    with source.open(encoding="utf-8", errors="surrogateescape") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SystemExit(f"rlrf: error: {source}:{line_no}: not JSON: {exc}") from None
            if not isinstance(row, dict):
                raise SystemExit(f"rlrf: error: {source}:{line_no}: expected a JSON object")
            yield line_no, row


def _row_id(row: dict[str, Any], source: Path, line_no: int) -> str:
    value = row.get("id")
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise SystemExit(f"rlrf: error: {source}:{line_no}: every row needs an 'id' (string or integer)")
    return str(value)


def _put(target: dict[str, Any], key: str, value: Any, source: Path, line_no: int) -> None:
    if key in target:
        raise SystemExit(f"rlrf: error: {source}:{line_no}: duplicate id {key!r}")
    target[key] = value


# the evaluation ---------------------------------------------------------------------------------------
@dataclass
class EvalOptions:
    """What ``evaluate`` computes besides the ``Settings`` (canvas, workers, weight paths)."""

    task: Task = "im2svg"
    tokenizer: str | None = None  # local Hugging Face tokenizer directory; None: characters
    judge: bool = True  # Text2SVG: call the judge proxy when RLRF_JUDGE_URL is set
    sort_by: str | None = None  # the HTML's primary metric; None: PRIMARY[task]
    keep_renders: bool = False  # PNGs for the HTML report
    progress: bool = True


@dataclass
class EvalReport:
    """Rows in id order, means over ``ok`` rows, counts, metadata; renders only when kept."""

    rows: list[dict[str, Any]]
    means: dict[str, dict[str, Any]]
    counts: dict[str, Any]
    metadata: dict[str, Any]
    # id: (reference, prediction, difference) PNGs, for the HTML report
    renders: dict[str, tuple[bytes | None, bytes | None, bytes | None]] = field(default_factory=dict)
    texts: dict[str, dict[str, str]] = field(default_factory=dict)  # id: prompt / prediction excerpts

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {"metadata": self.metadata, "counts": self.counts, "means": self.means, "rows": self.rows}


def evaluate(
    predictions: dict[str, str], references: dict[str, Reference], settings: Settings, options: EvalOptions
) -> EvalReport:
    """Render every prediction and reference in the sandbox and compute the task's metrics.

    Args:
        predictions: ``{id: raw model output}``.
        references: ``{id: Reference}``; every reference is a sample (a missing prediction is a failure).
        settings: canvas, renderer, sandbox limits, device and the learned metrics' weight paths.
        options: task, tokenizer, judge, HTML sort metric.

    Returns:
        The report; ``rows`` in id order.

    Raises:
        MissingWeightsError: a configured weight file is missing (before anything is rendered).
        ConfigError: a weight file of the wrong kind, or a missing font.
    """
    from tqdm import tqdm

    from services.reward_api.pipeline import check_settings

    check_settings(settings)
    models = _Models.load(settings, options, references)  # fails on a missing file before any rendering
    try:
        primary_metric(options.task, models.columns, options.sort_by)  # an unknown --sort-by fails now
    except SystemExit:
        models.close()
        raise
    ids = sorted(references)
    unmatched = sorted(set(predictions) - set(references))
    rows: list[dict[str, Any]] = []
    report = EvalReport(rows, {}, {}, {})
    started = time.perf_counter()
    try:
        with (
            _Sandbox(settings) as sandbox,
            tqdm(total=len(ids), desc="rlrf eval", unit="sample", file=sys.stderr, disable=not options.progress) as bar,
        ):
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                rows.extend(_evaluate_chunk(chunk, predictions, references, sandbox, models, settings, options, report))
                bar.update(len(chunk))
    finally:
        models.close()
    columns = models.columns
    report.means = _means(rows, columns)
    report.counts = _counts(rows, unmatched)
    report.metadata = _metadata(settings, options, models, unmatched, time.perf_counter() - started)
    return report


class _Sandbox:
    """The service's sandboxed render path: a ``WorkerPool`` and the policy, for both sides."""

    def __init__(self, settings: Settings) -> None:
        from dataclasses import replace
        from functools import partial

        from services.reward_api.pipeline import LocalBackend, Pipeline, render_pool
        from services.reward_api.scoring import render_job, render_reference, score_svg

        # blank_fraction 0: a blank prediction is a drawing to score here; it is flagged, not failed.
        job = render_job(settings, blank_fraction=0.0, return_images=("rgb",))
        limits = job.limits
        self.pool = render_pool(settings)
        self.score_prediction = partial(score_svg, job=job)
        # Ground truth may embed rasters, as in the service; the rest of the policy still applies.
        self.render_reference = partial(
            render_reference, job=replace(job, limits=replace(limits, reject_embedded_raster=False))
        )
        self.pipeline = Pipeline(settings, LocalBackend(self.pool))  # decodes image references as the service does

    def __enter__(self) -> _Sandbox:
        return self

    def __exit__(self, *_: object) -> None:
        self.pool.close()


@dataclass
class _Models:
    """The learned metrics, tokenizer and judge that are configured; why the others are absent."""

    task: Task
    columns: list[str]
    absent: dict[str, str]
    weights: dict[str, dict[str, Any]]
    count: Callable[[str], int]
    length_unit: str
    lpips: Any = None
    dino: Any = None
    clip: Any = None
    judge: Any = None

    @classmethod
    def load(cls, settings: Settings, options: EvalOptions, references: dict[str, Reference]) -> _Models:
        """Load what is configured (a missing file fails here, before any rendering)."""
        count, unit = _length_counter(options.tokenizer)
        models = cls(task=options.task, columns=[], absent={}, weights={}, count=count, length_unit=unit)
        if options.tokenizer:
            models.weights["tokenizer"] = {"dir": options.tokenizer}
        has_images = options.task == "im2svg" or any(
            r.svg is not None or r.image_b64 is not None for r in references.values()
        )
        if has_images:
            models.columns += ["mse", "ssim"]
            models._load_lpips(settings)
            models._load_dino(settings)
        else:
            models.absent.update(dict.fromkeys(IMAGE_METRICS, "no reference has an image (svg or image_b64)"))
        if options.task == "text2svg":
            models._load_clip(settings)
            models._connect_judge(settings, enabled=options.judge)
        else:
            models.absent.update(dict.fromkeys(TEXT_METRICS, "Text2SVG metric (--task text2svg)"))
        models.columns += list(LENGTH_COLUMNS)
        return models

    def _load_lpips(self, settings: Settings) -> None:
        if settings.lpips_backbone is None:
            self.absent["lpips"] = "no LPIPS trunk configured (--lpips-backbone / RLRF_LPIPS_BACKBONE)"
            return
        from trainer.learned_metrics import load_lpips

        self.lpips = load_lpips(
            settings.lpips_backbone,
            settings.lpips_net,
            inputs=settings.lpips_inputs,
            device=_device(settings),
            batch_size=settings.eval_batch_size,
        )
        self.columns.append("lpips")
        self.weights["lpips"] = {
            "backbone": str(settings.lpips_backbone),
            "net": settings.lpips_net,
            "inputs": settings.lpips_inputs,
            "linear_layers": "the lpips package's weights/v0.1",
        }

    def _load_dino(self, settings: Settings) -> None:
        if settings.dino_dir is None:
            self.absent["dino"] = "no DINO model configured (--dino-dir / RLRF_DINO_DIR)"
            return
        from trainer.learned_metrics import load_dino

        self.dino = load_dino(settings.dino_dir, device=_device(settings), batch_size=settings.eval_batch_size)
        self.columns.append("dino")
        self.weights["dino"] = {"dir": str(settings.dino_dir), "model_type": self.dino.model.config.model_type}

    def _load_clip(self, settings: Settings) -> None:
        if settings.clip_checkpoint is None:
            self.absent["clip_score"] = "no CLIP checkpoint configured (--clip-checkpoint / RLRF_CLIP_CHECKPOINT)"
            return
        from services.reward_api.models.clip import load_clip

        self.clip = load_clip(
            settings.clip_checkpoint, settings.clip_model, settings.clip_model_config, device=_device(settings)
        )
        self.columns.append("clip_score")
        self.weights["clip_score"] = {"checkpoint": str(settings.clip_checkpoint), "model": settings.clip_model}

    def _connect_judge(self, settings: Settings, *, enabled: bool) -> None:
        if not enabled:
            self.absent["judge"] = "judge turned off (--no-judge)"
            return
        if not settings.judge_url:
            self.absent["judge"] = "no judge proxy configured (RLRF_JUDGE_URL)"
            return
        from services.judge_proxy.client import JudgeClient

        token = settings.judge_token.get_secret_value() if settings.judge_token else None
        self.judge = JudgeClient(settings.judge_url, token=token, timeout_s=settings.judge_timeout_s)
        self.columns.append("judge")
        self.weights["judge"] = {
            "url": settings.judge_url,
            "rubric": settings.judge_rubric_text2svg,
            "backend": settings.judge_backend or "the proxy's default",
        }

    def close(self) -> None:
        if self.judge is not None:
            self.judge.close()


def _device(settings: Settings) -> Any:
    from services.reward_api.models._device import resolve_device

    return resolve_device(settings.device)


def _length_counter(tokenizer: str | None) -> tuple[Callable[[str], int], str]:
    if tokenizer is None:
        return len, "characters"
    from transformers import AutoTokenizer

    if not Path(tokenizer).is_dir():
        raise SystemExit(f"rlrf: error: --tokenizer {tokenizer} is not a directory (a local tokenizer is needed)")
    tok = AutoTokenizer.from_pretrained(tokenizer, local_files_only=True)
    tok.model_max_length = sys.maxsize  # counting only: no "sequence too long" warnings

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    return count, f"tokens ({Path(tokenizer).name})"


def _evaluate_chunk(
    ids: Sequence[str],
    predictions: dict[str, str],
    references: dict[str, Reference],
    sandbox: _Sandbox,
    models: _Models,
    settings: Settings,
    options: EvalOptions,
    report: EvalReport,
) -> list[dict[str, Any]]:
    import numpy as np

    from services.reward_api.core.results import Status
    from services.reward_api.svg.extract import extract_svg
    from trainer.metrics import code_efficiency
    from trainer.report import difference_image

    rows = {key: {"id": key, "status": "ok", "detail": None, "flags": []} for key in ids}
    ref_images = _reference_images(ids, references, sandbox, models.task, rows)
    extractions = {}
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
    with_image = [key for key in ok if ref_images.get(key) is not None]
    if with_image:
        from services.reward_api.components import Canvas
        from trainer.metrics import mean_squared_error, structural_similarity

        pred = np.stack([pred_images[k] for k in with_image])
        ref = np.stack([ref_images[k] for k in with_image])
        values = {"mse": mean_squared_error(pred, ref), "ssim": structural_similarity(pred, ref)}
        pred_rgb, ref_rgb = pred[..., ::-1], ref[..., ::-1]
        if models.lpips is not None:
            values["lpips"] = models.lpips.distance(pred_rgb, ref_rgb)
        if models.dino is not None:
            values["dino"] = models.dino.score(pred_rgb, ref_rgb)
        for i, key in enumerate(with_image):
            for name, array in values.items():
                rows[key][name] = float(array[i])
            ref_blank = Canvas(ref_images[key]).ink_fraction < settings.blank_fraction
            if Canvas(pred_images[key]).ink_fraction < settings.blank_fraction and not ref_blank:
                rows[key]["flags"].append("blank")

    # Text2SVG: CLIP score and the judge, against the prompt.
    with_text = [key for key in ok if references[key].text]
    if models.clip is not None and with_text:
        import torch

        images = torch.from_numpy(np.stack([pred_images[k][..., ::-1] for k in with_text]).copy())
        texts = models.clip.embed_texts([references[k].text for k in with_text])
        cos = (models.clip.embed_images(images) * texts).sum(dim=1)
        for key, value in zip(with_text, cos.tolist()):
            rows[key]["clip_score"] = 100.0 * max(value, 0.0)
    if models.judge is not None and with_text:
        _judge(models, settings, [(k, pred_images[k], references[k].text) for k in with_text], rows)

    # Code efficiency: the extracted <svg> element on both sides.
    for key in ok:
        ref_svg = references[key].svg
        if ref_svg is None:
            continue
        pred_len = models.count(extractions[key].svg or "")
        ref_len = models.count(extract_svg(ref_svg).svg or ref_svg)
        rows[key].update(pred_length=pred_len, ref_length=ref_len, code_efficiency=code_efficiency(pred_len, ref_len))

    if options.keep_renders:
        for key in ids:
            ref_image, pred_image = ref_images.get(key), pred_images.get(key)
            diff = None if ref_image is None or pred_image is None else difference_image(pred_image, ref_image)
            report.renders[key] = (_png(ref_image), _png(pred_image), _png(diff))
            shown = {}
            if references[key].text:
                shown["prompt"] = references[key].text
            if key in predictions:  # the SVG it answered with, else the raw output (prose, a cut block)
                shown["prediction"] = extractions[key].svg or predictions[key]
            report.texts[key] = shown
    fixed = ("id", "status", "detail", "flags", *models.columns)  # every row: these keys in this order
    return [
        {name: rows[key].get(name) for name in fixed} | {k: v for k, v in rows[key].items() if k not in fixed}
        for key in ids
    ]


def _reference_images(
    ids: Sequence[str], references: dict[str, Reference], sandbox: _Sandbox, task: Task, rows: dict[str, dict]
) -> dict[str, Any]:
    """BGR canvases of the references that have an image; a reference that fails marks its row."""
    from services.reward_api.core.errors import BadReferenceError
    from services.reward_api.core.schemas import ReferenceIn
    from services.reward_api.sandbox import TaskCrash, TaskFailure, TaskTimeout

    images: dict[str, Any] = {}
    svg_keys = [k for k in ids if references[k].svg is not None]
    futures = sandbox.pool.submit(sandbox.render_reference, [references[k].svg for k in svg_keys])
    for key in ids:
        ref = references[key]
        if ref.svg is None and ref.image_b64 is not None:
            try:
                prepared = sandbox.pipeline.prepare_reference(ReferenceIn(image_b64=ref.image_b64))
                images[key] = prepared.canvas.image if prepared.canvas is not None else None
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


def _read_outcome(future: Any, row: dict[str, Any], images: dict[str, Any], key: str) -> None:
    from services.reward_api.core.results import Status
    from services.reward_api.sandbox import TaskCrash, TaskFailure, TaskTimeout

    try:
        outcome = future.result()
    except TaskTimeout as exc:
        _fail(row, "render_timeout", str(exc))
        return
    except TaskCrash as exc:
        _fail(row, "render_crash", str(exc))
        return
    except TaskFailure as exc:  # a bug or a closed pool: ours, not the model's
        _fail(row, "error", f"{type(exc).__name__}: {exc}")
        return
    row["flags"] = list(outcome.flags)
    if outcome.status is not Status.ok:
        _fail(row, outcome.status.value, outcome.detail)
        return
    images[key] = outcome.images["rgb"]


def _fail(row: dict[str, Any], status: str, detail: str | None) -> None:
    row["status"] = status
    row["detail"] = detail


def _judge(models: _Models, settings: Settings, items: list[tuple[str, Any, str | None]], rows: dict) -> None:
    """One judge call per sample (each has its own prompt), a few at a time. Failures stay null."""
    from concurrent.futures import ThreadPoolExecutor

    from services.judge_proxy.client import JudgeError, JudgeUnavailable

    def one(item: tuple[str, Any, str | None]) -> tuple[str, float | None, str | None]:
        key, image, prompt = item
        try:
            (verdict,) = models.judge.judge(
                settings.judge_rubric_text2svg, [_png(image) or b""], prompt=prompt, backend=settings.judge_backend
            )
        except JudgeUnavailable as exc:
            return key, None, f"judge proxy unavailable: {exc}"
        if isinstance(verdict, JudgeError):
            return key, None, f"judge failed: {verdict.error}"
        return key, float(verdict.score), None

    with ThreadPoolExecutor(max_workers=4) as executor:
        for key, score, error in executor.map(one, items):
            rows[key]["judge"] = score
            if error is not None:
                rows[key]["judge_error"] = error


def _png(image: Any) -> bytes | None:
    if image is None:
        return None
    import cv2

    ok, data = cv2.imencode(".png", image)  # BGR, as imencode expects
    return data.tobytes() if ok else None


# summary ---------------------------------------------------------------------------------------------
def _means(rows: list[dict[str, Any]], columns: list[str]) -> dict[str, dict[str, Any]]:
    from trainer.metrics import HIGHER_IS_BETTER

    means = {}
    for name in columns:
        values = [row[name] for row in rows if row["status"] == "ok" and row.get(name) is not None]
        means[name] = {
            "mean": math.fsum(values) / len(values) if values else None,
            "n": len(values),
            "higher_is_better": HIGHER_IS_BETTER.get(name),
        }
    return means


def _counts(rows: list[dict[str, Any]], unmatched: list[str]) -> dict[str, Any]:
    by_status = Counter(row["status"] for row in rows)
    ok = by_status.get("ok", 0)
    failed = sum(by_status.get(s, 0) for s in MODEL_FAILURES)
    return {
        "samples": len(rows),
        "ok": ok,
        "failed": failed,
        "errors": sum(by_status.get(s, 0) for s in OUR_ERRORS),
        "failure_rate": failed / (ok + failed) if ok + failed else None,
        "by_status": dict(sorted(by_status.items())),
        "judge_errors": sum(1 for row in rows if row.get("judge_error")),
        "blank": sum(1 for row in rows if "blank" in row["flags"]),
        "unmatched_predictions": len(unmatched),
    }


def primary_metric(task: Task, columns: Sequence[str], requested: str | None = None) -> str | None:
    """The metric the report sorts by: ``requested``, else the task's first present one (``PRIMARY``)."""
    if requested is not None:
        if requested not in columns:
            raise SystemExit(f"rlrf: error: --sort-by {requested}: not a column of this run ({', '.join(columns)})")
        return requested
    return next((name for name in PRIMARY[task] if name in columns), None)


def _metadata(
    settings: Settings, options: EvalOptions, models: _Models, unmatched: list[str], seconds: float
) -> dict[str, Any]:
    conventions = {
        "render": f"{settings.renderer} on a {settings.size}x{settings.size} white canvas; the prediction's root is "
        "rewritten to the canvas and checked by the service's policy first (StarVector: cairosvg at 512x512)",
        "means": "over rows with status ok and a value; failed renders are counted (failure_rate), never scored",
        "mse": "mean squared error of RGB intensities in [0, 1] over pixels and channels (StarVector compute_l2)",
        "ssim": "scikit-image structural_similarity(win_size=11, channel_axis=-1, data_range=255) on uint8 RGB: "
        "uniform window, sample covariance, K1=0.01, K2=0.03 (StarVector compute_SSIM)",
        "lpips": f"LPIPS v0.1, net={settings.lpips_net}, inputs "
        + (
            "in [-1, 1] as the lpips library expects"
            if settings.lpips_inputs == "standard"
            else "ImageNet-normalised as StarVector compute_LPIPS feeds them (not lpips's [-1, 1])"
        ),
        "dino": "(cos + 1) / 2 of the mean over all tokens of last_hidden_state, images through the directory's "
        "image processor (StarVector compute_dino_score, facebook/dinov2-base)",
        "clip_score": "100 * max(cos, 0) of open_clip image and prompt embeddings (CLIPScore with torchmetrics' "
        "w=100; StarVector averages the unclamped 100 * cos)",
        "judge": f"VLM judge score in [0, 1] from the judge proxy, rubric {settings.judge_rubric_text2svg}; "
        "a judge failure is null with judge_error, never 0",
        "code_efficiency": f"len(prediction) - len(reference) in {models.length_unit} of the extracted <svg> "
        "element (StarVector count_token_length: gen - gt); negative: shorter than the reference",
    }
    shown = set(models.columns) | {"render", "means"}
    return {
        "task": options.task,
        "canvas": settings.size,
        "renderer": settings.renderer,
        "length_unit": models.length_unit,
        "primary_metric": primary_metric(options.task, models.columns, options.sort_by),
        "columns": models.columns,
        "absent": models.absent,
        "weights": models.weights,
        "conventions": {k: v for k, v in conventions.items() if k in shown},
        "unmatched_prediction_ids": unmatched[:20],
        "seconds": round(seconds, 3),
    }


def format_table(report: EvalReport) -> str:
    """Per-sample rows, then the means (with n) and the counts, as aligned text."""
    columns = report.metadata["columns"]
    header = ["id", "status", *columns, "flags"]
    lines = [header]
    for row in report.rows:
        cells = [row["id"], row["status"], *(format_value(name, row.get(name)) for name in columns)]
        lines.append([*cells, ",".join(row["flags"]) or "-"])
    means = report.means
    lines.append(["mean", f"{report.counts['ok']} ok", *(format_value(n, means[n]["mean"]) for n in columns), ""])
    lines.append(["n", "", *(str(means[n]["n"]) for n in columns), ""])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]
    text.insert(-2, "-" * len(text[0]))
    return "\n".join([*text, summary_line(report)])


def summary_line(report: EvalReport) -> str:
    """``ok 9/12, failed 2 (18.2%): no_svg 1, rejected 1; errors 1; ...``"""
    c = report.counts
    failures = ", ".join(f"{s} {n}" for s, n in c["by_status"].items() if s in MODEL_FAILURES) or "none"
    rate = "n/a" if c["failure_rate"] is None else f"{100 * c['failure_rate']:.1f}%"
    parts = [f"ok {c['ok']}/{c['samples']}", f"failed {c['failed']} ({rate}): {failures}"]
    if c["errors"]:
        errors = ", ".join(f"{s} {n}" for s, n in c["by_status"].items() if s in OUR_ERRORS)
        parts.append(f"not scored (our side or the reference): {errors}")
    if c["judge_errors"]:
        parts.append(f"judge errors {c['judge_errors']}")
    if c["unmatched_predictions"]:
        parts.append(f"{c['unmatched_predictions']} predictions without a reference ignored")
    absent = report.metadata["absent"]
    if absent:
        parts.append("absent: " + ", ".join(sorted(absent)))
    parts.append(f"lengths in {report.metadata['length_unit']}")
    return "; ".join(parts)


def format_value(name: str, value: Any) -> str:
    """A metric value as the table and the report show it (``-`` for none)."""
    if value is None:
        return "-"
    if name in LENGTH_COLUMNS:  # integers per row, means may be fractional
        sign = "+" if name == "code_efficiency" else ""
        return f"{value:{sign}d}" if isinstance(value, int) else f"{value:{sign}.1f}"
    if name == "clip_score":
        return f"{value:.2f}"
    return f"{value:.4f}"


# command line ----------------------------------------------------------------------------------------
def add_eval_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``rlrf eval`` on the ``rlrf`` command's subparsers; returns its parser."""
    parser = subparsers.add_parser(
        "eval",
        help="the paper's metrics (MSE, SSIM, LPIPS, DINO, code efficiency; CLIP, judge) with an HTML report",
        description=(
            "Evaluate predictions against references with the metrics of RLRF / StarVector.\n"
            "  im2svg:   MSE, SSIM, LPIPS, DINO score, code efficiency (token or character length difference)\n"
            "  text2svg: CLIP score, VLM judge score, code efficiency (plus the image metrics where a\n"
            "            reference has an image)\n"
            "\n"
            "Pairing: folders match files by stem (prediction foo.svg or foo.txt raw model output; reference\n"
            "foo.svg/foo.png/foo.jpg and/or foo.txt prompt). JSONL: one object per line with an 'id';\n"
            "predictions 'completion' or 'svg', references 'svg', 'image_b64' and/or 'text'.\n"
            "\n"
            "Every prediction is extracted and rendered in the service's sandbox: a hostile or broken SVG\n"
            "gets a status (no_svg, truncated, parse_error, rejected, render_timeout, render_crash), never\n"
            "a score. Means are over the ok samples and say over how many; the failure rate is reported.\n"
            "LPIPS, DINO and CLIP read local weight files only (see trainer/EVAL.md); an unconfigured one\n"
            "is absent from the output, never 0. Settings not given here come from RLRF_* variables."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pred", required=True, type=Path, metavar="DIR|JSONL", help="the predictions")
    parser.add_argument("--ref", required=True, type=Path, metavar="DIR|JSONL", help="the references")
    parser.add_argument(
        "--task", choices=["im2svg", "text2svg"], default="im2svg", help="which metrics (default im2svg)"
    )
    parser.add_argument("--json", type=Path, metavar="OUT.json", help="write rows, means, counts and metadata")
    parser.add_argument("--html", type=Path, metavar="OUT.html", help="write a self-contained report, worst first")
    parser.add_argument("--size", type=int, help="canvas side in pixels (default 224, max 1024)")
    parser.add_argument("--renderer", choices=["resvg", "cairosvg"], help="renderer (default resvg)")
    parser.add_argument("--workers", type=int, help="sandboxed render processes (default 2)")
    parser.add_argument(
        "--tokenizer", metavar="DIR", help="local Hugging Face tokenizer for code efficiency (default: characters)"
    )
    parser.add_argument("--lpips-backbone", type=Path, metavar="FILE", help="torchvision vgg16/alexnet state dict")
    parser.add_argument("--lpips-net", choices=["vgg", "alex"], help="LPIPS trunk (default vgg, as StarVector)")
    parser.add_argument(
        "--lpips-inputs",
        choices=["standard", "starvector"],
        help="standard: [-1, 1] as lpips expects (default); starvector: ImageNet-normalised, as its code does",
    )
    parser.add_argument("--dino-dir", type=Path, metavar="DIR", help="DINOv2 directory (transformers layout)")
    parser.add_argument("--clip-checkpoint", type=Path, metavar="FILE", help="open_clip checkpoint (text2svg)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where the learned metrics run")
    parser.add_argument("--batch-size", type=int, help="images per forward pass of the learned metrics (default 16)")
    parser.add_argument(
        "--sort-by", metavar="METRIC", help="the HTML's primary metric (default mse; text2svg clip_score)"
    )
    parser.add_argument("--no-judge", action="store_true", help="text2svg: do not call the judge proxy")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(func=run_eval)
    return parser


def run_eval(args: argparse.Namespace) -> int:
    """``rlrf eval``: read, evaluate, print the table, write ``--json`` and ``--html``.

    Returns:
        0, or 1 when some samples hit our own infrastructure failure (status ``error``; outputs still written).
    """
    from pydantic import ValidationError

    from services.reward_api.core.settings import Settings

    given = {
        "size": args.size,
        "renderer": args.renderer,
        "workers": args.workers,
        "lpips_backbone": args.lpips_backbone,
        "lpips_net": args.lpips_net,
        "lpips_inputs": args.lpips_inputs,
        "dino_dir": args.dino_dir,
        "clip_checkpoint": args.clip_checkpoint,
        "device": args.device,
        "eval_batch_size": args.batch_size,
    }
    try:
        settings = Settings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        raise SystemExit(f"rlrf: error: {exc}") from None
    predictions = read_predictions(args.pred)
    references = read_references(args.ref)
    if not references:
        raise SystemExit(f"rlrf: error: no references found in {args.ref}")
    options = EvalOptions(
        task=args.task,
        tokenizer=args.tokenizer,
        judge=not args.no_judge,
        sort_by=args.sort_by,
        keep_renders=args.html is not None,
        progress=not args.no_progress,
    )
    report = evaluate(predictions, references, settings, options)
    report.metadata.update(pred=str(args.pred), ref=str(args.ref))
    print(format_table(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    if args.html is not None:
        from trainer.report import write_html

        write_html(report, args.html)
    errors = report.counts["by_status"].get("error", 0)
    if errors:  # the outputs are written, but a number over fewer samples than asked must not pass silently
        print(f"rlrf: error: {errors} samples could not be scored on our side (status error)", file=sys.stderr)
        return 1
    return 0

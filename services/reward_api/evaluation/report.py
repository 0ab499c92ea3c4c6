"""The ``rlrf eval --html`` report: one self-contained page, worst samples first.

Everything is inline: renders as base64 PNG ``data:`` URIs, the CSS in a ``<style>``, no script, no
link, no font, so the file can be mailed or opened offline. Model output is never inlined as SVG or
HTML: the page shows our PNG renders of it and its code as escaped text, so a hostile prediction
cannot run in the researcher's browser.

Each sample shows the reference, the prediction and their difference (the reference faded to grey,
changed pixels in red by magnitude), or, for a failure, its status and the reason.

Order: the model's failures first (no_svg, rejected, ...), then the ``ok`` samples from worst to best
by the primary metric (``metadata["primary_metric"]``: ``--sort-by``, default MSE for Im2SVG and the
CLIP score for Text2SVG; code efficiency has no direction and sorts furthest from 0 first), ``ok``
samples without that value right after the failures, and last the samples nobody scored (a broken
reference, our own error).
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from services.reward_api.evaluation.summary import MODEL_FAILURES, EvalReport, format_value, summary_line
from services.reward_api.image_metrics import HIGHER_IS_BETTER

__all__ = ["difference_image", "order_rows", "render_html", "write_html"]

_EXCERPT_CHARS = 4000  # of a prediction's code or raw output shown under each sample
_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin: 0 0 .3em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ddd; padding: 4px 8px; vertical-align: top; text-align: left; }
th { background: #f4f4f4; }
.summary td.num, .metrics td { font-variant-numeric: tabular-nums; text-align: right; }
.meta, .counts, .absent { margin: .3em 0; }
.absent { color: #8a5a00; }
.samples img { width: 224px; height: 224px; image-rendering: auto; border: 1px solid #ccc; background: #fff; }
.failed { width: 224px; min-height: 224px; box-sizing: border-box; padding: 8px; background: #fdecea;
  border: 1px solid #e0a0a0; overflow-wrap: anywhere; }
.noimage { width: 224px; padding: 8px; color: #666; font-style: italic; }
.status { font-weight: bold; }
.status-ok .status { color: #17692c; }
tr.failure .status { color: #b00020; }
tr.unscored .status { color: #8a5a00; }
.primary { font-weight: bold; }
.prompt { max-width: 224px; white-space: pre-wrap; }
pre { max-width: 60em; max-height: 20em; overflow: auto; background: #f8f8f8; padding: 6px; white-space: pre-wrap;
  overflow-wrap: anywhere; }
"""


def difference_image(prediction: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Where two BGR canvases differ: the reference faded to light grey, differences in red by magnitude."""
    gray = cv2.cvtColor(reference, cv2.COLOR_BGR2GRAY).astype(np.float32)
    base = 255.0 - 0.25 * (255.0 - gray)  # faint reference for orientation
    alpha = np.abs(prediction.astype(np.int16) - reference.astype(np.int16)).max(axis=2).astype(np.float32) / 255.0
    alpha = np.where(alpha > 0, np.maximum(alpha, 0.35), 0.0)  # faint differences stay visible
    out = np.empty_like(reference)
    out[:, :, 0] = base * (1 - alpha)  # B
    out[:, :, 1] = base * (1 - alpha)  # G
    out[:, :, 2] = base * (1 - alpha) + 220.0 * alpha  # R
    return out


def order_rows(rows: list[dict[str, Any]], primary: str | None) -> list[dict[str, Any]]:
    """Failures, then ``ok`` rows worst first by ``primary`` (missing values first), then unscored rows."""
    direction = HIGHER_IS_BETTER.get(primary or "")

    def badness(value: float) -> float:
        if direction is None:  # no direction (code efficiency): furthest from 0 first
            return abs(value)
        return -value if direction else value

    def key(row: dict[str, Any]) -> tuple[int, float, str]:
        if row["status"] in MODEL_FAILURES:
            return 0, 0.0, f"{MODEL_FAILURES.index(row['status']):02d}{row['id']}"
        if row["status"] != "ok":
            return 3, 0.0, row["id"]
        value = row.get(primary) if primary else None
        if value is None:
            return 1, 0.0, row["id"]
        return 2, -badness(value), row["id"]

    return sorted(rows, key=key)


def render_html(report: EvalReport) -> str:
    """The report as one HTML string."""
    meta = report.metadata
    primary = meta.get("primary_metric")
    columns = list(meta["columns"])
    rows = order_rows(report.rows, primary)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>rlrf eval: {_esc(meta['task'])}, {report.counts['samples']} samples</title>",
        f"<style>{_CSS}</style></head><body>",
        _header(report, primary, columns),
        '<table class="samples"><thead><tr><th>#</th><th>sample</th><th>reference</th><th>prediction</th>'
        "<th>difference</th><th>metrics</th></tr></thead><tbody>",
    ]
    for rank, row in enumerate(rows, 1):
        parts.append(_sample(rank, row, report, primary, columns))
    parts.append("</tbody></table></body></html>")
    return "\n".join(parts) + "\n"


def write_html(report: EvalReport, path: Path) -> None:
    """Write ``render_html(report)`` to ``path`` (UTF-8)."""
    path.write_text(render_html(report), encoding="utf-8")


def _header(report: EvalReport, primary: str | None, columns: list[str]) -> str:
    meta = report.metadata
    direction = {True: " (higher is better)", False: " (lower is better)", None: " (furthest from 0 first)"}[
        HIGHER_IS_BETTER.get(primary or "")
    ]
    order = f"sorted by {primary}{direction}, worst first" if primary else "no metric to sort by: failures first"
    source = ", ".join(f"{k} {_esc(meta[k])}" for k in ("pred", "ref") if k in meta)
    lines = [
        f"<header><h1>rlrf eval: {_esc(meta['task'])}</h1>",
        f'<p class="meta">{source}{"; " if source else ""}canvas {meta["canvas"]} px, {_esc(meta["renderer"])}; '
        f"lengths in {_esc(meta['length_unit'])}; {_esc(order)}</p>",
        '<table class="summary"><thead><tr><th>metric</th><th>mean</th><th>n</th><th>better</th></tr></thead><tbody>',
    ]
    for name in columns:
        mean = report.means[name]
        better = {True: "higher", False: "lower", None: ""}[mean["higher_is_better"]]
        lines.append(
            f"<tr><td>{_esc(name)}</td><td class=num>{format_value(name, mean['mean'])}</td>"
            f"<td class=num>{mean['n']}</td><td>{better}</td></tr>"
        )
    lines.append("</tbody></table>")
    lines.append(f'<p class="counts">{_esc(summary_line(report))}</p>')
    for name, why in sorted(meta["absent"].items()):
        lines.append(f'<p class="absent">absent: {_esc(name)}: {_esc(why)}</p>')
    lines.append("<details><summary>conventions</summary><dl>")
    for name, text in meta["conventions"].items():
        lines.append(f"<dt>{_esc(name)}</dt><dd>{_esc(text)}</dd>")
    lines.append("</dl></details></header>")
    return "\n".join(lines)


def _sample(rank: int, row: dict[str, Any], report: EvalReport, primary: str | None, columns: list[str]) -> str:
    key = row["id"]
    status = row["status"]
    kind = "ok" if status == "ok" else "failure" if status in MODEL_FAILURES else "unscored"
    ref_png, pred_png, diff_png = report.renders.get(key, (None, None, None))
    texts = report.texts.get(key, {})
    value = row.get(primary) if primary else None
    data_primary = "" if value is None else f' data-primary="{value!r}"'
    flags = ", ".join(row["flags"])

    sample = [f"<b>{_esc(key)}</b>", f'<span class="status">{_esc(status)}</span>']
    if flags:
        sample.append(f"flags: {_esc(flags)}")
    if texts.get("prompt"):
        sample.append(f'<div class="prompt">{_esc(texts["prompt"])}</div>')

    if ref_png is not None:
        reference = _img(ref_png, f"reference {key}")
    elif status == "reference_error":
        reference = f'<div class="failed">{_esc(row["detail"] or "")}</div>'
    else:
        reference = '<div class="noimage">no reference image</div>'

    if pred_png is not None and status == "ok":
        prediction = _img(pred_png, f"prediction {key}")
    else:
        detail = row["detail"] or ("not rendered: the reference failed" if kind == "unscored" else "")
        prediction = f'<div class="failed"><span class="status">{_esc(status)}</span><br>{_esc(detail)}</div>'

    difference = "" if diff_png is None or status != "ok" else _img(diff_png, f"difference {key}")

    metrics = []
    for name in columns:
        css = ' class="primary"' if name == primary else ""
        metrics.append(f"<tr{css}><th>{_esc(name)}</th><td>{format_value(name, row.get(name))}</td></tr>")
    if row.get("judge_error"):
        metrics.append(f"<tr><th>judge_error</th><td>{_esc(row['judge_error'])}</td></tr>")
    code = texts.get("prediction")
    excerpt = ""
    if code:
        cut = code[:_EXCERPT_CHARS] + (
            f"\n… ({len(code) - _EXCERPT_CHARS} more characters)" if len(code) > _EXCERPT_CHARS else ""
        )
        excerpt = f"<details><summary>prediction code</summary><pre>{_esc(cut)}</pre></details>"
    return (
        f'<tr class="sample {kind} status-{_esc(status)}" data-id="{_esc(key)}" data-status="{_esc(status)}"'
        f"{data_primary}><td>{rank}</td><td>{'<br>'.join(sample)}</td><td>{reference}</td><td>{prediction}</td>"
        f"<td>{difference}</td>"
        f'<td><table class="metrics">{"".join(metrics)}</table>{excerpt}</td></tr>'
    )


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def _esc(text: Any) -> str:
    # Lone surrogates (undecodable bytes kept by surrogateescape) cannot be written as UTF-8.
    return html.escape(str(text).encode("utf-8", "replace").decode("utf-8"), quote=True)

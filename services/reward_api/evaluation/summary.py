"""What ``rlrf eval`` reports over the rows: the statuses, means over ``ok`` rows, counts, the text table.

A sample's status is the model's failure (``MODEL_FAILURES``: counted in the failure rate) or ours
(``OUR_ERRORS``: a broken reference or an infrastructure error, counted apart and never blamed on
the model). Means are taken over the ``ok`` rows that have a value, and say over how many.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from services.reward_api.core.errors import InputError
from services.reward_api.evaluation.config import Task
from services.reward_api.image_metrics import HIGHER_IS_BETTER

__all__ = [
    "IMAGE_METRICS",
    "LENGTH_COLUMNS",
    "MODEL_FAILURES",
    "OUR_ERRORS",
    "PRIMARY",
    "TEXT_METRICS",
    "EvalReport",
    "counts",
    "format_table",
    "format_value",
    "means",
    "primary_metric",
    "summary_line",
]

# Statuses of a sample. The model's failures count in the failure rate; ours do not.
MODEL_FAILURES = ("missing", "no_svg", "truncated", "parse_error", "rejected", "render_timeout", "render_crash")
OUR_ERRORS = ("reference_error", "error")
IMAGE_METRICS = ("mse", "ssim", "lpips", "dino")
TEXT_METRICS = ("clip_score", "judge")
LENGTH_COLUMNS = ("code_efficiency", "pred_length", "ref_length")
# The metric the HTML report sorts by unless --sort-by says otherwise: the first one present.
PRIMARY: dict[Task, tuple[str, ...]] = {"im2svg": ("mse",), "text2svg": ("clip_score", "judge", "mse")}

# id: (reference, prediction, difference) PNGs
Renders = tuple[bytes | None, bytes | None, bytes | None]


@dataclass
class EvalReport:
    """Rows in id order, means over ``ok`` rows, counts, metadata; renders only when kept."""

    rows: list[dict[str, Any]]
    means: dict[str, dict[str, Any]]
    counts: dict[str, Any]
    metadata: dict[str, Any]
    renders: dict[str, Renders] = field(default_factory=dict)  # for the HTML report
    texts: dict[str, dict[str, str]] = field(default_factory=dict)  # id: prompt / prediction excerpts

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {"metadata": self.metadata, "counts": self.counts, "means": self.means, "rows": self.rows}


def means(rows: list[dict[str, Any]], columns: list[str]) -> dict[str, dict[str, Any]]:
    """Per column: the mean over ``ok`` rows with a value, their number, and the metric's direction."""
    out = {}
    for name in columns:
        values = [row[name] for row in rows if row["status"] == "ok" and row.get(name) is not None]
        out[name] = {
            "mean": math.fsum(values) / len(values) if values else None,
            "n": len(values),
            "higher_is_better": HIGHER_IS_BETTER.get(name),
        }
    return out


def counts(rows: list[dict[str, Any]], unmatched: list[str]) -> dict[str, Any]:
    """Samples by status, the failure rate over the model's outcomes, judge errors, blank renders."""
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
    """The metric the report sorts by: ``requested``, else the task's first present one (``PRIMARY``).

    Raises:
        InputError: ``requested`` is not a column of this run.
    """
    if requested is not None:
        if requested not in columns:
            raise InputError(f"--sort-by {requested}: not a column of this run ({', '.join(columns)})")
        return requested
    return next((name for name in PRIMARY[task] if name in columns), None)


def format_table(report: EvalReport) -> str:
    """Per-sample rows, then the means (with n) and the counts, as aligned text."""
    columns = report.metadata["columns"]
    header = ["id", "status", *columns, "flags"]
    lines = [header]
    for row in report.rows:
        cells = [row["id"], row["status"], *(format_value(name, row.get(name)) for name in columns)]
        lines.append([*cells, ",".join(row["flags"]) or "-"])
    mean = report.means
    lines.append(["mean", f"{report.counts['ok']} ok", *(format_value(n, mean[n]["mean"]) for n in columns), ""])
    lines.append(["n", "", *(str(mean[n]["n"]) for n in columns), ""])
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

"""The audit's HTML report: per profile, the win-rate table, then per class the worst references
with the hack's render beside the mildly corrupted honest one and both rewards. One self-contained file.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from services.reward_api.audit import generators as gen
from services.reward_api.audit.run import AuditResult, _label, table

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
.case{display:inline-block;margin:6px;padding:6px;border:1px solid #ddd;font-size:12px;vertical-align:top}
.case img{width:128px;height:128px;image-rendering:pixelated;border:1px solid #eee;background:#fff}
.win{background:#fdd}.bad{color:#b00;font-weight:bold}
"""


def _img(png: bytes | None) -> str:
    if not png:
        return '<div style="width:128px;height:128px;display:inline-block;border:1px dashed #ccc">no render</div>'
    return f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _markdown_table_to_html(markdown: str) -> str:
    rows = [
        line.strip("|").split("|")
        for line in markdown.splitlines()
        if line.startswith("|") and not line.startswith("|---")
    ]
    notes = [line for line in markdown.splitlines() if line and not line.startswith("|")]
    out = ["<table>"]
    for k, cells in enumerate(rows):
        tag = "th" if k == 0 else "td"
        out.append(
            "<tr>"
            + "".join(
                f'<{tag} class="{"win" if tag == "td" and c.strip().endswith("%") and c.strip() != "0%" else ""}">'
                f"{html.escape(c.strip())}</{tag}>"
                for c in cells
            )
            + "</tr>"
        )
    return "\n".join([*out, "</table>", *(f"<p>{html.escape(n)}</p>" for n in notes)])


def write_html(result: AuditResult, path: Path, worst: int = 3, optimizer_html: str = "") -> None:
    """Write the report for ``result`` to ``path``."""
    mild = f"honest@{gen.MILD:g}"
    parts = [
        "<!doctype html><meta charset=utf-8><title>rlrf audit</title>",
        f"<style>{_STYLE}</style><h1>rlrf audit</h1>",
        f"<p>{len(result.references)} references, task {html.escape(result.task)}. Command: "
        f"<code>{html.escape(result.command)}</code></p>",
        "<p>Win rate: share of references where the hack scores at least the honest drawing with 10% of its "
        "shapes dropped and the rest slightly shifted. Monotonicity: mean Spearman of reward against corruption "
        "strength (1: the reward falls with every step).</p>",
        _markdown_table_to_html(table(result)),
    ]
    failures = result.failures()
    parts.append(
        "<p class=bad>Failures: " + html.escape("; ".join(failures)) + "</p>" if failures else "<p>No failures.</p>"
    )
    descriptions = {h.name: h.description for h in gen.IM2SVG_HACKS}
    for audit in result.profiles:
        if audit.skipped:
            continue
        parts.append(f"<h2>{html.escape(_label(audit.profile, audit.step))}</h2>")
        for hack in result.hacks:
            margins = sorted(audit.margins.get(hack, []), reverse=True)[:worst]
            outcomes = ", ".join(f"{k} {v}" for k, v in sorted(audit.outcomes.get(hack, {}).items()))
            rate = audit.win_rates.get(hack)
            parts.append(
                f"<h3>{html.escape(hack)}: {'-' if rate is None else f'{rate:.0%}'} wins</h3>"
                f"<p>{html.escape(descriptions.get(hack, ''))}. Outcomes: {html.escape(outcomes)}</p>"
            )
            for margin, name in margins:
                rewards = audit.rewards.get(name, {})
                renders = result.renders.get(name, {})
                hack_reward, mild_reward = rewards.get(hack), rewards.get(mild)
                parts.append(
                    f'<div class="case{" win" if margin >= 0 else ""}"><b>{html.escape(name)}</b><br>'
                    f"{_img(renders.get('target'))}{_img(renders.get(mild))}{_img(renders.get(hack))}<br>"
                    f"target &middot; honest 10%: {_fmt(mild_reward)} &middot; {html.escape(hack)}: "
                    f"{_fmt(hack_reward)} (margin {margin:+.3f})</div>"
                )
    parts.append(optimizer_html)
    path.write_text("\n".join(parts), encoding="utf-8")


def _fmt(value: float | None) -> str:
    return "null" if value is None else f"{value:+.3f}"

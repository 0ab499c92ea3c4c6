"""Find the SVG in a chat completion.

Rules, applied in order (all linear in the input length):

1. ``<think>…</think>`` blocks are dropped; an unclosed ``<think>`` drops everything after it.
2. If ``<answer>`` tags are present, only the last answer is searched (unclosed: to the end).
3. If markdown code fences contain ``<svg``, only the last such fence is searched, so prose that
   merely mentions ``<svg>`` cannot derail the match.
4. The **last top-level** ``<svg>…</svg>`` block wins (nested ``<svg>`` elements are part of their
   parent). Models that draft and then revise put the answer last; an earlier complete draft does
   not rescue a final block that never closes, which is ``truncated``.
5. No ``<svg`` start tag at all is ``no_svg``.

A prefixed root (``<svg:svg xmlns:svg="http://www.w3.org/2000/svg">``) counts as ``<svg>``; the
policy then checks that the prefix is bound to SVG's namespace. References pass through the same
rules (``scoring.render_reference``), which also drops an XML prolog and a ``DOCTYPE``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.reward_api.core.results import Status

_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.S)
# `[^<>]*` keeps the scan linear: an attribute value holding '<' is not XML anyway.
_PREFIX = r"(?:[A-Za-z_][\w.-]*:)?"  # a namespace prefix; the name stops at '<', so the scan stays linear
_SVG_TAG = re.compile(rf"<{_PREFIX}svg(?=[\s>/])[^<>]*>|</{_PREFIX}svg\s*>")
_SVG_START = re.compile(rf"<{_PREFIX}svg(?=[\s>/]|\Z)")


@dataclass(frozen=True, slots=True)
class Extraction:
    """The SVG found in a completion, or why there is none."""

    status: Status
    svg: str | None = None


def extract_svg(text: str, *, max_chars: int = 8_000_000) -> Extraction:
    """Return the SVG block a completion answers with.

    Args:
        text: raw model output (chat text, markdown, reasoning).
        max_chars: longer inputs are cut first; a cut SVG then reads as ``truncated``.

    Returns:
        ``Extraction(Status.ok, svg)``, or ``no_svg`` / ``truncated`` with ``svg=None``.

    >>> extract_svg("Sure!\\n```svg\\n<svg xmlns='http://www.w3.org/2000/svg'/>\\n```").svg
    "<svg xmlns='http://www.w3.org/2000/svg'/>"
    """
    region = _answer_region(text[:max_chars])
    start: int | None = None
    depth = 0
    last: tuple[int, int] | None = None
    open_at: int | None = None
    for match in _SVG_TAG.finditer(region):
        tag = match.group()
        if tag.startswith("</"):
            if depth == 0:
                continue  # stray closing tag in prose
            depth -= 1
            if depth == 0 and start is not None:
                last, open_at = (start, match.end()), None
        elif tag.endswith("/>"):
            if depth == 0:
                last, open_at = (match.start(), match.end()), None
        else:
            if depth == 0:
                start = open_at = match.start()
            depth += 1
    if open_at is not None:
        return Extraction(Status.truncated)
    if last is None:
        return Extraction(Status.truncated if _SVG_START.search(region) else Status.no_svg)
    return Extraction(Status.ok, region[last[0] : last[1]])


def _answer_region(text: str) -> str:
    text = _drop_thinking(text)
    start = text.rfind("<answer>")
    if start >= 0:
        end = text.find("</answer>", start)
        text = text[start + len("<answer>") : end if end >= 0 else None]
    fenced = [block for block in _FENCE.findall(text) if _SVG_START.search(block)]
    return fenced[-1] if fenced else text


def _drop_thinking(text: str) -> str:
    kept: list[str] = []
    pos = 0
    while (start := text.find("<think>", pos)) >= 0:
        kept.append(text[pos:start])
        end = text.find("</think>", start)
        if end < 0:
            return "".join(kept)
        pos = end + len("</think>")
    kept.append(text[pos:])
    return "".join(kept)

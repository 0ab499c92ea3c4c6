"""Reading ``rlrf eval``'s predictions and references, paired by id (docs/EVAL.md, "Pairing").

* a folder pairs files by stem: a prediction ``foo.svg`` or ``foo.txt`` (raw model output: prose,
  fences, ``<think>``) with a reference ``foo.svg``, ``foo.png`` or ``foo.jpg`` (the image) and/or
  ``foo.txt`` (the Text2SVG prompt);
* a JSONL file holds one object per line with an ``id``: predictions ``completion`` (raw output) or
  ``svg``; references ``svg``, ``image_b64`` and/or ``text``.

A file that cannot be paired raises ``InputError`` naming the file and line, before anything renders.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from services.reward_api.core.errors import InputError

__all__ = ["Reference", "read_predictions", "read_references"]

_PRED_SUFFIXES = (".svg", ".txt")
_IMAGE_SUFFIXES = (".svg", ".png", ".jpg", ".jpeg")
_V = TypeVar("_V")


@dataclass(frozen=True, slots=True)
class Reference:
    """One ground-truth sample: its SVG code, an image (base64 PNG/JPEG) and/or the Text2SVG prompt."""

    svg: str | None = None
    image_b64: str | None = None
    text: str | None = None


def read_predictions(source: Path) -> dict[str, str]:
    """``{id: raw model output}`` from a folder (``*.svg``/``*.txt`` by stem) or a JSONL file.

    Raises:
        InputError: two predictions for one id, a row without ``id`` or text, a file that is not JSONL.
    """
    if source.is_dir():
        found: dict[str, str] = {}
        for path in sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in _PRED_SUFFIXES):
            if path.stem in found:
                raise InputError(f"{source} has two predictions for {path.stem!r} (.svg and .txt)")
            found[path.stem] = _read_text(path)
        return found
    rows: dict[str, str] = {}
    for line_no, row in _jsonl(source):
        text = row.get("completion", row.get("svg"))
        if not isinstance(text, str):
            raise InputError(f"{source}:{line_no}: a prediction needs a 'completion' or 'svg' string")
        _put(rows, _row_id(row, source, line_no), text, source, line_no)
    return rows


def read_references(source: Path) -> dict[str, Reference]:
    """``{id: Reference}`` from a folder (``foo.svg|png|jpg`` image, ``foo.txt`` prompt) or a JSONL file.

    Raises:
        InputError: two images for one id, a row without ``id`` or content, a file that is not JSONL.
    """
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
                raise InputError(f"{source} has two reference images for {path.stem!r}")
            if suffix == ".svg":
                entry["svg"] = _read_text(path)
            else:
                entry["image_b64"] = base64.b64encode(path.read_bytes()).decode("ascii")
        return {key: Reference(**entry) for key, entry in parts.items()}
    refs: dict[str, Reference] = {}
    for line_no, row in _jsonl(source):
        fields = {k: row.get(k) for k in ("svg", "image_b64", "text")}
        if not any(isinstance(v, str) for v in fields.values()):
            raise InputError(f"{source}:{line_no}: a reference needs 'svg', 'image_b64' or 'text'")
        ref = Reference(**{k: v for k, v in fields.items() if isinstance(v, str)})
        _put(refs, _row_id(row, source, line_no), ref, source, line_no)
    return refs


def _read_text(path: Path) -> str:
    # surrogateescape keeps undecodable bytes visible to the policy, which reports parse_error.
    return path.read_bytes().decode("utf-8", "surrogateescape")


def _jsonl(source: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if not source.is_file():
        raise InputError(f"{source} is neither a folder nor a JSONL file")
    with source.open(encoding="utf-8", errors="surrogateescape") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{source}:{line_no}: not JSON: {exc}") from None
            if not isinstance(row, dict):
                raise InputError(f"{source}:{line_no}: expected a JSON object")
            yield line_no, row


def _row_id(row: dict[str, Any], source: Path, line_no: int) -> str:
    value = row.get("id")
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise InputError(f"{source}:{line_no}: every row needs an 'id' (string or integer)")
    return str(value)


def _put(target: dict[str, _V], key: str, value: _V, source: Path, line_no: int) -> None:
    if key in target:
        raise InputError(f"{source}:{line_no}: duplicate id {key!r}")
    target[key] = value

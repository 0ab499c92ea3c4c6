"""``rlrf data prepare``: SVG collections → a training dataset, filtered as RLRF does.

Input: a folder of ``*.svg`` files, or a Hugging Face dataset saved locally (``save_to_disk``) with
an SVG column (SVG-Stack, StarVector data). Each SVG is rendered onto the reward canvas by the same
sandboxed pipeline that scores rollouts (so a reference that hangs or crashes a renderer is dropped,
not fatal), its tokens are counted, and it is dropped, with the reason counted, when it is:

* ``broken``: the policy rejects it or no renderer can draw it;
* ``embedded_raster``: it embeds a raster image (``<image>`` / base64): nothing to learn as vectors;
* ``blank``: the render is (near-)white;
* ``low_entropy``: the render's colour entropy is under ``--min-entropy`` bits (flat, near-empty);
* ``too_long`` / ``too_short``: over ``--max-tokens``, or under ``--min-tokens`` (the RL subset of
  the paper keeps only SVGs long enough to be worth optimising).

Output (``save_to_disk``): ``prompt``, ``svg``, ``image`` (the rendered reference, PNG), ``svg_tokens``
(used as the length reward's reference) and ``source``; plus ``summary.json`` with the counts.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.reward_api import png
from services.reward_api.components.length import char_length
from services.reward_api.core.errors import InputError, RewardError
from services.reward_api.core.schemas import ReferenceIn
from services.reward_api.core.settings import Settings
from services.reward_api.pipeline import Pipeline

__all__ = ["DEFAULT_PROMPT", "PrepareOptions", "Summary", "colour_entropy", "prepare", "read_svgs"]

DEFAULT_PROMPT = "Generate the SVG code that renders exactly this image."
_RASTER = re.compile(r"<(?:\w+:)?image\b|data:image/", re.I)


@dataclass
class PrepareOptions:
    """The filters and the output's prompt (``rlrf data prepare``'s options)."""

    size: int = 224
    max_tokens: int = 8192
    min_tokens: int = 0
    min_entropy: float = 0.2
    prompt: str = DEFAULT_PROMPT
    tokenizer: str | None = None  # a local tokenizer directory; else the character proxy (chars / 4)
    svg_column: str = "svg"
    workers: int = 2


@dataclass
class Summary:
    """How many SVGs were read and kept, and why the others were dropped."""

    seen: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"seen": self.seen, "kept": self.kept, "dropped": dict(sorted(self.dropped.items()))}


def colour_entropy(image: np.ndarray, bins: int = 8) -> float:
    """Shannon entropy (bits) of the image's colours quantised to ``bins`` levels per channel."""
    quantised = (image // (256 // bins)).astype(np.int32)
    codes = (quantised[:, :, 0] * bins + quantised[:, :, 1]) * bins + quantised[:, :, 2]
    counts = np.bincount(codes.ravel(), minlength=bins**3).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def read_svgs(source: Path, column: str) -> Iterator[tuple[str, str]]:
    """(source id, SVG text) from a folder of .svg files or a dataset saved with ``save_to_disk``.

    Raises:
        InputError: ``source`` is neither, or the dataset has no ``column``.
    """
    if source.is_dir() and ((source / "dataset_info.json").exists() or (source / "dataset_dict.json").exists()):
        from datasets import load_from_disk

        dataset = load_from_disk(str(source))
        if hasattr(dataset, "keys"):  # a DatasetDict: take the train split, else the first
            dataset = dataset["train"] if "train" in dataset else dataset[next(iter(dataset.keys()))]
        if column not in dataset.column_names:
            raise InputError(f"{source} has no column {column!r} (columns: {dataset.column_names})")
        for index, row in enumerate(dataset):
            yield f"{source.name}[{index}]", row[column]
    elif source.is_dir():
        for path in sorted(source.rglob("*.svg")):
            yield str(path.relative_to(source)), path.read_text(encoding="utf-8", errors="replace")
    else:
        raise InputError(f"{source} is neither a folder of .svg files nor a saved dataset")


def prepare(source: Path, output: Path, options: PrepareOptions, *, progress: bool = True) -> Summary:
    """Render, count, filter and save; returns the counts (also written to ``output/summary.json``).

    Raises:
        InputError: ``source`` cannot be read (see ``read_svgs``).
        ConfigError: a missing font or tokenizer.
    """
    from datasets import Dataset, Features, Image, Value
    from tqdm import tqdm

    count = _token_counter(options.tokenizer)
    rows: list[dict[str, Any]] = []
    summary = Summary()
    items = list(read_svgs(source, options.svg_column))
    with Pipeline.embedded(Settings(size=options.size, workers=options.workers)) as pipeline:
        for name, svg in tqdm(items, desc="preparing", unit="svg", disable=not progress):
            summary.seen += 1
            reason, row = _one(pipeline, name, svg, options, count)
            if reason:
                summary.dropped[reason] += 1
            else:
                rows.append(row)
    summary.kept = len(rows)
    features = Features(
        {
            "prompt": Value("string"),
            "svg": Value("string"),
            "image": Image(),
            "svg_tokens": Value("int32"),
            "source": Value("string"),
        }
    )
    output.mkdir(parents=True, exist_ok=True)
    Dataset.from_list(rows, features=features).save_to_disk(str(output))
    (output / "summary.json").write_text(json.dumps(summary.as_dict(), indent=2))
    return summary


def _one(
    pipeline: Pipeline, name: str, svg: str, options: PrepareOptions, count: Callable[[str], int]
) -> tuple[str | None, dict[str, Any]]:
    if _RASTER.search(svg):
        return "embedded_raster", {}
    tokens = count(svg)
    if tokens > options.max_tokens:
        return "too_long", {}
    if tokens < options.min_tokens:
        return "too_short", {}
    try:
        prepared = pipeline.prepare_reference(ReferenceIn(svg=svg))
    except RewardError:
        return "broken", {}
    if prepared.blank:
        return "blank", {}
    assert prepared.canvas is not None  # an SVG reference always has one
    if colour_entropy(prepared.canvas.image) < options.min_entropy:
        return "low_entropy", {}
    image = png.encode(prepared.canvas.image)  # the canvas is BGR, as the encoder expects
    return None, {"prompt": options.prompt, "svg": svg, "image": {"bytes": image}, "svg_tokens": tokens, "source": name}


def _token_counter(tokenizer: str | None) -> Callable[[str], int]:
    if tokenizer is None:
        return lambda text: math.ceil(char_length(text) / 4)  # ~4 characters per SVG token
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer, local_files_only=True)
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])

"""`rlrf data prepare` on real SVGs plus written-in failures, from a folder and from a saved dataset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from services.reward_api.data import colour_entropy
from tests import _hostile as h
from tests.conftest import REPO, svg_dev_files

datasets = pytest.importorskip("datasets")


def _rlrf(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "services.reward_api.cli", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_prepare_folder_filters_and_counts(tmp_path: Path) -> None:
    source = tmp_path / "svgs"
    source.mkdir()
    for path in svg_dev_files()[:40]:
        (source / path.name).write_text(path.read_text())
    (source / "broken.svg").write_text("<svg><rect")
    (source / "hostile.svg").write_text(f'<svg {h.NS}><use href="http://127.0.0.1:9/a.svg#b"/></svg>')
    (source / "blank.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (source / "raster.svg").write_text(h.image_href("data:image/png;base64,iVBORw0KGgo="))
    (source / "speck.svg").write_text('<svg viewBox="0 0 100 100"><rect x="40" y="40" width="8" height="8"/></svg>')
    (source / "long.svg").write_text(h.huge_path(0.15))
    out = tmp_path / "prepared"
    proc = _rlrf("data", "prepare", str(source), str(out), "--max-tokens", "20000", "--min-entropy", "0.2")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seen"] == 46
    assert summary["dropped"] == {"blank": 1, "broken": 2, "embedded_raster": 1, "low_entropy": 1, "too_long": 1}
    assert summary["kept"] == 40
    assert "kept 40 of 46 SVGs; dropped: blank 1, broken 2, embedded_raster 1, low_entropy 1, too_long 1" in proc.stdout
    assert "preparing" in proc.stderr  # the progress bar
    dataset = datasets.load_from_disk(str(out))
    assert dataset.column_names == ["prompt", "svg", "image", "svg_tokens", "source"]
    row = dataset[0]
    assert row["image"].size == (224, 224) and row["svg_tokens"] > 0 and row["svg"].lstrip().startswith("<svg")


def test_prepare_saved_dataset_with_a_tokenizer_and_min_tokens(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    svgs = [path.read_text() for path in svg_dev_files()[100:130]]
    saved = tmp_path / "svg-stack-like"
    datasets.Dataset.from_dict({"Svg": svgs, "Filename": [f"{i}.svg" for i in range(30)]}).save_to_disk(str(saved))
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(svgs, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>"]))
    tok_dir = tmp_path / "tok"
    PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>").save_pretrained(tok_dir)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(tok_dir)
    counts = sorted(len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in svgs)
    threshold = counts[10]  # keeps the 20 longest
    out = tmp_path / "rl"
    proc = _rlrf(
        "data",
        "prepare",
        str(saved),
        str(out),
        "--svg-column",
        "Svg",
        "--tokenizer",
        str(tok_dir),
        "--min-tokens",
        str(threshold),
        "--min-entropy",
        "0",
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dropped"].get("too_short") == sum(c < threshold for c in counts)
    dataset = datasets.load_from_disk(str(out))
    assert min(dataset["svg_tokens"]) >= threshold
    missing = _rlrf("data", "prepare", str(saved), str(tmp_path / "x"), "--svg-column", "nope")
    assert missing.returncode != 0 and "has no column 'nope'" in missing.stderr


def test_colour_entropy() -> None:
    flat = np.full((10, 10, 3), 255, np.uint8)
    half = flat.copy()
    half[:5] = 0
    assert colour_entropy(flat) == 0.0 and colour_entropy(half) == pytest.approx(1.0)

"""`rlrf eval` end to end on real SVGs: statuses, means over ok rows, learned metrics, JSON and HTML."""

from __future__ import annotations

import argparse
import base64
import json
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from services.reward_api.core.errors import InputError, MissingWeightsError
from services.reward_api.evaluation.cli import add_eval_parser, run_eval
from services.reward_api.evaluation.inputs import read_predictions, read_references
from tests import _hostile as h
from tests.conftest import svg_dev_files

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="rlrf")
    add_eval_parser(parser.add_subparsers(required=True))
    args = parser.parse_args(["eval", "--no-progress", *argv])
    return run_eval(args)


def _shift(svg: str) -> str:
    """The same drawing moved: renders, but differs from the reference."""
    start = svg.index(">", svg.index("<svg")) + 1
    end = svg.rindex("</svg")
    return f'{svg[:start]}<g transform="translate(3 2)">{svg[start:end]}</g>{svg[end:]}'


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Ten real svg_dev references and predictions covering every outcome; expected status per id."""
    root = tmp_path_factory.mktemp("eval-corpus")
    pred, ref = root / "pred", root / "ref"
    pred.mkdir()
    ref.mkdir()
    files = svg_dev_files()[3::29][:10]
    svgs = {f"s{i}_{p.stem[:20]}": p.read_text() for i, p in enumerate(files)}
    ids = sorted(svgs)
    for key, svg in svgs.items():
        (ref / f"{key}.svg").write_text(svg)
    expected = {}

    def write(i: int, name: str, text: str, status: str) -> None:
        (pred / name.format(ids[i])).write_text(text)
        expected[ids[i]] = status

    write(0, "{}.svg", svgs[ids[0]], "ok")  # exact
    write(1, "{}.txt", f"<think>hm</think>Here you go:\n```svg\n{svgs[ids[1]]}\n```\nDone.", "ok")  # exact, in chat
    write(2, "{}.svg", _shift(svgs[ids[2]]), "ok")
    write(3, "{}.svg", _shift(_shift(svgs[ids[3]])), "ok")
    write(4, "{}.txt", "I am sorry, I cannot draw that as an SVG.", "no_svg")  # prose only
    write(5, "{}.svg", h.image_href("/etc/passwd"), "rejected")  # hostile: reads a file
    write(6, "{}.svg", h.use_bomb(), "render_crash")  # hostile: node bomb
    write(7, "{}.svg", svgs[ids[7]][: len(svgs[ids[7]]) // 2], "truncated")
    expected[ids[8]] = "missing"  # no prediction file at all
    write(9, "{}.svg", svgs[ids[9]], "reference_error")  # its reference is broken below
    (ref / f"{ids[9]}.svg").write_text("<svg><rect")
    (pred / "stray.svg").write_text(h.GOOD)  # a prediction without a reference: ignored, counted
    return {"pred": pred, "ref": ref, "expected": expected, "svgs": svgs, "ids": ids}


def test_folder_eval_statuses_means_json_and_table(
    corpus: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, page = tmp_path / "out.json", tmp_path / "out.html"
    pair = ("--pred", str(corpus["pred"]), "--ref", str(corpus["ref"]))
    assert _run(*pair, "--json", str(out), "--html", str(page)) == 0
    doc = json.loads(out.read_text())
    rows = {row["id"]: row for row in doc["rows"]}
    assert {key: row["status"] for key, row in rows.items()} == corpus["expected"]
    ids = corpus["ids"]

    # Exact predictions (raw file and chat output alike) score perfectly; shifted ones do not.
    for key in ids[:2]:
        assert rows[key]["mse"] == 0.0 and rows[key]["ssim"] == pytest.approx(1.0)
        assert rows[key]["code_efficiency"] == 0
    for key in ids[2:4]:
        assert rows[key]["mse"] > 0 and rows[key]["ssim"] < 1
    assert rows[ids[3]]["code_efficiency"] > rows[ids[2]]["code_efficiency"] > 0  # each wrapper adds characters
    assert rows[ids[5]]["flags"] == ["external_href"] and "/etc/passwd" in rows[ids[5]]["detail"]

    # Failed rows carry no metric values (null, never 0); unconfigured metrics are absent altogether.
    for key in ids[4:]:
        assert all(rows[key][m] is None for m in ("mse", "ssim", "code_efficiency"))
    assert "lpips" not in doc["means"] and all("lpips" not in row and "dino" not in row for row in doc["rows"])
    assert set(doc["metadata"]["absent"]) >= {"lpips", "dino", "clip_score", "judge"}
    assert "RLRF_LPIPS_BACKBONE" in doc["metadata"]["absent"]["lpips"]

    # Means are over the four ok rows, and say so; the failure rate counts the model's failures only.
    ok_mse = [rows[k]["mse"] for k in ids[:4]]
    assert doc["means"]["mse"] == {"mean": pytest.approx(sum(ok_mse) / 4), "n": 4, "higher_is_better": False}
    counts = doc["counts"]
    assert counts["samples"] == 10 and counts["ok"] == 4 and counts["failed"] == 5 and counts["errors"] == 1
    assert counts["failure_rate"] == pytest.approx(5 / 9)
    assert counts["unmatched_predictions"] == 1
    meta = doc["metadata"]
    assert meta["length_unit"] == "characters" and meta["primary_metric"] == "mse"
    assert "win_size=11" in meta["conventions"]["ssim"] and "[0, 1]" in meta["conventions"]["mse"]

    table = capsys.readouterr().out
    assert table.count("\n") >= 13 and "mean" in table and "4 ok" in table
    assert "failed 5 (55.6%)" in table and "absent: clip_score, dino, judge, lpips" in table
    assert "lengths in characters" in table

    _check_html(page.read_text(), doc)


class _Page(HTMLParser):
    """The sample rows, their images, and every attribute that could fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.samples: list[dict[str, Any]] = []
        self.tags: set[str] = set()
        self.urls: list[str] = []
        self.header_images = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href", "srcset", "action", "data") and v]
        if tag == "tr" and "sample" in (a.get("class") or "").split():
            row = {"id": a["data-id"], "status": a["data-status"], "primary": a.get("data-primary"), "imgs": []}
            self.samples.append(row)
        elif tag == "img":
            if self.samples:
                self.samples[-1]["imgs"].append(a)
            else:
                self.header_images += 1


def _check_html(text: str, doc: dict[str, Any]) -> None:
    page = _Page()
    page.feed(text)
    assert len(page.samples) == len(doc["rows"])  # one row per sample
    assert {"script", "link", "iframe", "object", "svg"}.isdisjoint(page.tags)
    assert "<svg" not in text  # model output only ever appears escaped
    assert page.urls and all(url.startswith("data:image/png;base64,") for url in page.urls)  # self-contained
    for url in page.urls:
        assert base64.b64decode(url.split(",", 1)[1]).startswith(PNG_MAGIC)

    # Worst first: the model's failures, then ok rows by decreasing MSE, then the unscored reference.
    statuses = [s["status"] for s in page.samples]
    assert set(statuses[:5]) == {"no_svg", "rejected", "render_crash", "truncated", "missing"}
    assert statuses[5:9] == ["ok"] * 4 and statuses[9] == "reference_error"
    mses = [float(s["primary"]) for s in page.samples[5:9]]
    assert mses == sorted(mses, reverse=True) and mses[-1] == 0.0
    for sample in page.samples:  # ok: reference and prediction side by side; failures: no prediction image
        alts = [img["alt"].split()[0] for img in sample["imgs"]]
        if sample["status"] == "ok":
            assert alts == ["reference", "prediction", "difference"]
        elif sample["status"] == "reference_error":
            assert alts == []
        else:
            assert alts == ["reference"]
    assert "render_crash" in text and "only #id and raster data: URIs are allowed" in text  # the detail is shown
    for name in ("mse", "ssim", "code_efficiency"):
        assert f"<td>{name}</td>" in text  # the summary header lists every mean


def _tokenizer(directory: Path) -> Path:
    """A byte-level BPE tokenizer trained here on svg_dev text, saved as a local tokenizer directory."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    corpus = [p.read_text() for p in svg_dev_files()[:60]]
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<eos>"]))
    PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", eos_token="<eos>").save_pretrained(directory)
    return directory


def test_jsonl_eval_with_lpips_dino_and_a_tokenizer(
    corpus: dict[str, Any], eval_weights: dict[str, Path], tmp_path: Path
) -> None:
    pytest.importorskip("lpips")
    ids, svgs = corpus["ids"][:4], corpus["svgs"]
    preds = [{"id": ids[0], "svg": svgs[ids[0]]}, {"id": ids[1], "completion": f"```svg\n{_shift(svgs[ids[1]])}\n```"}]
    preds.append({"id": ids[2], "completion": "no drawing today"})
    refs = [{"id": key, "svg": svgs[key]} for key in ids[:3]]
    import cv2
    import numpy as np

    png = cv2.imencode(".png", np.full((40, 80, 3), 255, np.uint8))[1].tobytes()  # letterboxed onto the canvas
    refs.append({"id": ids[3], "image_b64": base64.b64encode(png).decode()})
    preds.append({"id": ids[3], "svg": '<svg viewBox="0 0 2 1"><rect width="2" height="1" fill="#fff"/></svg>'})
    blank = corpus["ids"][4]  # an empty drawing: scored like any render, and flagged
    refs.append({"id": blank, "svg": svgs[blank]})
    preds.append({"id": blank, "svg": '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"/>'})
    (pred := tmp_path / "pred.jsonl").write_text("".join(json.dumps(r) + "\n" for r in preds))
    (ref := tmp_path / "ref.jsonl").write_text("".join(json.dumps(r) + "\n" for r in refs))
    tok = _tokenizer(tmp_path / "tok")
    out = tmp_path / "out.json"
    argv = ["--pred", str(pred), "--ref", str(ref), "--json", str(out), "--tokenizer", str(tok), "--size", "96"]
    argv += ["--lpips-backbone", str(eval_weights["alex"]), "--lpips-net", "alex"]
    argv += ["--dino-dir", str(eval_weights["dino"])]
    assert _run(*argv) == 0
    doc = json.loads(out.read_text())
    rows = {row["id"]: row for row in doc["rows"]}
    exact, shifted, prose, image_ref = (rows[k] for k in ids[:4])
    assert exact["lpips"] == 0.0 and exact["dino"] == pytest.approx(1.0, abs=1e-5) and exact["mse"] == 0.0
    assert shifted["lpips"] > 0 and shifted["dino"] < 1 and shifted["status"] == "ok"
    assert prose["status"] == "no_svg" and prose["lpips"] is None and prose["dino"] is None
    # An image reference has no SVG: every image metric, but no code efficiency.
    assert image_ref["status"] == "ok" and image_ref["mse"] == 0.0 and image_ref["code_efficiency"] is None
    assert rows[blank]["status"] == "ok" and rows[blank]["flags"] == ["blank"] and rows[blank]["mse"] > 0
    assert image_ref["flags"] == []  # white on a white reference is a match, not a blank failure
    assert doc["counts"]["blank"] == 1
    assert doc["means"]["lpips"]["n"] == 4 and doc["means"]["code_efficiency"]["n"] == 3
    meta = doc["metadata"]
    assert meta["canvas"] == 96 and meta["length_unit"] == "tokens (tok)"
    assert meta["weights"]["lpips"]["net"] == "alex" and meta["weights"]["dino"]["model_type"] == "dinov2"
    assert "[-1, 1]" in meta["conventions"]["lpips"] and "dino" not in meta["absent"]
    from transformers import AutoTokenizer

    tokens = AutoTokenizer.from_pretrained(str(tok))
    n_tokens = len(tokens(svgs[ids[0]].strip(), add_special_tokens=False)["input_ids"])
    assert exact["pred_length"] == exact["ref_length"] == n_tokens < len(svgs[ids[0]])  # tokens, not characters


@pytest.fixture
def judge_proxy() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A stand-in judge proxy speaking the real wire format; prompts containing 'unjudgeable' fail."""
    from fastapi import FastAPI

    from tests.judge_proxy._servers import serve

    app, seen = FastAPI(), []

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/judge")
    def judge(body: dict[str, Any]) -> dict[str, Any]:
        seen.append(body)
        if "unjudgeable" in body["prompt"]:
            result: dict[str, Any] = {"status": "error", "error": "the judge refused", "retryable": False}
        else:
            result = {"status": "ok", "score": 0.75, "axes": {"fidelity": 0.75}}
        reply = {"rubric": body["rubric"], "rubric_version": "1", "backend": "fake", "model": "fake"}
        return {**reply, "results": [result]}

    with serve(app) as url:
        yield url, seen


def test_text2svg_clip_score_and_judge_with_failures_kept_apart(
    corpus: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    judge_proxy: tuple[str, list[dict[str, Any]]],
) -> None:
    from tests.models._weights import make_clip_checkpoint

    checkpoint, config = make_clip_checkpoint(tmp_path / "clip")
    monkeypatch.setenv("RLRF_CLIP_MODEL_CONFIG", str(config))
    url, seen = judge_proxy
    monkeypatch.setenv("RLRF_JUDGE_URL", url)
    ids, svgs = corpus["ids"][:3], corpus["svgs"]
    refs = [{"id": ids[0], "text": "a red circle"}, {"id": ids[1], "text": "an unjudgeable icon"}]
    refs.append({"id": ids[2], "text": "a gear"})
    preds = [{"id": ids[0], "svg": svgs[ids[0]]}, {"id": ids[1], "svg": svgs[ids[1]]}]
    preds.append({"id": ids[2], "completion": h.image_href("file:///etc/passwd")})  # hostile: reads a file
    (pred := tmp_path / "pred.jsonl").write_text("".join(json.dumps(r) + "\n" for r in preds))
    (ref := tmp_path / "ref.jsonl").write_text("".join(json.dumps(r) + "\n" for r in refs))
    out, page = tmp_path / "out.json", tmp_path / "out.html"
    argv = ["--task", "text2svg", "--pred", str(pred), "--ref", str(ref), "--clip-checkpoint", str(checkpoint)]
    assert _run(*argv, "--json", str(out), "--html", str(page), "--size", "64") == 0
    doc = json.loads(out.read_text())
    rows = {row["id"]: row for row in doc["rows"]}
    judged, refused, hostile = (rows[k] for k in ids)
    assert judged["judge"] == 0.75 and "judge_error" not in judged
    assert refused["judge"] is None and refused["judge_error"] == "judge failed: the judge refused"  # never 0
    assert refused["status"] == "ok" and 0 <= refused["clip_score"] <= 100  # the render itself scored
    assert hostile["status"] == "rejected" and hostile["judge"] is None and hostile["clip_score"] is None
    assert len(seen) == 2 and all(b["rubric"] == "rlrf-text2svg" and len(b["candidates_b64"]) == 1 for b in seen)
    assert base64.b64decode(seen[0]["candidates_b64"][0]).startswith(PNG_MAGIC)
    assert doc["means"]["judge"]["n"] == 1 and doc["means"]["clip_score"]["n"] == 2
    assert doc["counts"]["judge_errors"] == 1
    assert doc["metadata"]["absent"]["mse"] == "no reference has an image (svg or image_b64)"
    assert doc["metadata"]["primary_metric"] == "clip_score"
    assert "100 * max(cos, 0)" in doc["metadata"]["conventions"]["clip_score"]
    text = page.read_text()
    assert "a red circle" in text and "judge failed: the judge refused" in text and "no reference image" in text

    # A proxy that cannot be reached: every judge value is missing with the reason, nothing else changes.
    monkeypatch.setenv("RLRF_JUDGE_URL", "http://127.0.0.1:9")
    assert _run(*argv, "--json", str(out), "--size", "64") == 0
    rows = {row["id"]: row for row in json.loads(out.read_text())["rows"]}
    for key in ids[:2]:
        assert rows[key]["judge"] is None and rows[key]["judge_error"].startswith("judge proxy unavailable")
        assert rows[key]["clip_score"] is not None


def test_missing_weights_fail_before_rendering_and_name_the_file(corpus: dict[str, Any], tmp_path: Path) -> None:
    missing = tmp_path / "vgg16-397923af.pth"
    with pytest.raises(MissingWeightsError, match=r"vgg16-397923af\.pth"):
        _run("--pred", str(corpus["pred"]), "--ref", str(corpus["ref"]), "--lpips-backbone", str(missing))
    with pytest.raises(InputError, match="--sort-by lpips: not a column"):
        _run("--pred", str(corpus["pred"]), "--ref", str(corpus["ref"]), "--sort-by", "lpips")


def test_input_pairing_rules(tmp_path: Path) -> None:
    folder = tmp_path / "pred"
    folder.mkdir()
    (folder / "a.svg").write_text(h.GOOD)
    (folder / "b.txt").write_bytes(b"```svg\n" + h.GOOD.encode() + b"\xff\n```")  # undecodable bytes survive
    (folder / "notes.md").write_text("ignored")
    assert sorted(read_predictions(folder)) == ["a", "b"]
    assert "\udcff" in read_predictions(folder)["b"]
    (folder / "a.txt").write_text("again")
    with pytest.raises(InputError, match="two predictions for 'a'"):
        read_predictions(folder)

    refs = tmp_path / "ref"
    refs.mkdir()
    (refs / "a.svg").write_text(h.GOOD)
    (refs / "a.txt").write_text("a red dot\n")
    (refs / "b.png").write_bytes(PNG_MAGIC)
    found = read_references(refs)
    assert found["a"].svg == h.GOOD and found["a"].text == "a red dot" and found["b"].image_b64 is not None

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "svg": "<svg/>"}\n\n{"svg": "<svg/>"}\n')
    with pytest.raises(InputError, match=r"bad\.jsonl:3: every row needs an 'id'"):
        read_predictions(bad)
    bad.write_text('{"id": 1, "svg": "<svg/>"}\n{"id": "1", "completion": "x"}\n')
    with pytest.raises(InputError, match=r"bad\.jsonl:2: duplicate id '1'"):
        read_predictions(bad)
    bad.write_text('{"id": 1, "caption": "x"}\n')
    with pytest.raises(InputError, match="needs 'svg', 'image_b64' or 'text'"):
        read_references(bad)

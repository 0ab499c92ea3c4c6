"""The svg_dev corpus travels with the repository: every file its manifest lists is there, unmodified."""

from __future__ import annotations

import csv
import hashlib

from tests.conftest import SVG_DEV, svg_dev_files


def test_svg_dev_matches_its_manifest() -> None:
    with (SVG_DEV / "MANIFEST.tsv").open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert len(rows) == len(svg_dev_files()) == 300
    for row in rows:
        data = (SVG_DEV / row["file"]).read_bytes()
        assert len(data) == int(row["bytes"]), row["file"]
        assert hashlib.sha256(data).hexdigest() == row["sha256"], row["file"]
    assert "CC-BY-4.0" in (SVG_DEV / "LICENSES.md").read_text()  # attribution ships with the files

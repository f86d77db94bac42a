"""The 87 real photos of ../shared/data/photos (a development set; see its README) read with the shipped model:
a guard against losing what is read today, not a measure of the reader (benchmarks/read_photos.py is)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from digitkit.runtime.classifier import DEFAULT_MODEL, DigitClassifier

PHOTOS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "photos"


@pytest.mark.slow
def test_the_development_photos_are_read_at_least_as_well_as_measured() -> None:
    if not (PHOTOS / "labels.csv").is_file():
        pytest.skip(f"no development photos at {PHOTOS}")
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"no shipped model at {DEFAULT_MODEL}; run `make model`")
    with open(PHOTOS / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    clf = DigitClassifier(threads=1)
    texts = {row["file"]: clf.classify(str(PHOTOS / row["file"])).text for row in rows}
    exact = sum(texts[row["file"]] == row["text"] for row in rows)
    assert exact >= 84, f"{exact} of {len(rows)} read exactly (84 measured with benchmarks/read_photos.py)"
    assert all(texts[row["file"]] == "" for row in rows if row["kind"] == "blank_box_crop")  # blank stays blank

"""The touching-digit splitter's cuts (slanted writing, duplicate cuts, the blob's ink height) and when a
blob is tried at all: fast synthetic tests."""

from __future__ import annotations

import cv2
import numpy as np

from digitkit.runtime.cuts import _distinct, plan_split, slant
from digitkit.runtime.segment import Segment
from digitkit.runtime.split import split_touching


def _slanted_pair(lean: float) -> np.ndarray:
    """Two slanted bars leaning by ``lean`` x per row (negative: top to the right), touching by a short
    joint; the gap between them is slanted too, so no vertical cut parts them without cutting a bar."""
    crop = np.zeros((80, 110), np.uint8)
    for x0 in (35, 65):
        top, bottom = (round(x0 - lean * 35), 5), (round(x0 + lean * 35), 75)
        cv2.line(crop, top, bottom, 255, 6)
    cv2.line(crop, (45, 40), (57, 40), 255, 4)  # the joint: one component
    return crop


def _parts(paths_row: np.ndarray, crop: np.ndarray, scale: float) -> bool:
    """Whether one cut (work pixels per row) leaves the two bars on opposite sides, crossing only the joint."""
    work = cv2.resize(crop, (round(crop.shape[1] * scale), 40), interpolation=cv2.INTER_AREA)
    on = work[np.arange(40), np.clip(paths_row, 0, work.shape[1] - 1)] >= 64
    return int(on.sum()) <= 4


def test_slant_reads_the_lean_of_the_writing() -> None:
    assert slant(_slanted_pair(-0.4)) < -0.2  # leaning right: x grows as y falls
    assert slant(_slanted_pair(0.4)) > 0.2
    assert abs(slant(_slanted_pair(0.0))) < 0.05


def test_a_slanted_gap_gets_a_slanted_cut() -> None:
    crop = _slanted_pair(-0.5)
    plan = plan_split(crop)
    assert plan is not None
    inner = plan.paths[1:-1]
    good = [p for p in inner if _parts(p, crop, plan.scale)]
    assert good, "no cut follows the slanted gap"
    assert any(p[0] - p[-1] >= 10 for p in good)  # the cut leans with the writing (top right of bottom)


def test_near_duplicate_cuts_are_dropped_and_distinct_ones_kept() -> None:
    base = np.full(40, 20)
    paths = np.stack([base, base + 1, base + np.r_[np.zeros(20, int), np.full(20, 6)], base + 10])
    kept = _distinct(paths)
    assert len(kept) == 3  # the copy one column over goes; the one that bends away and the far one stay
    assert (kept[0] == base).all()


def test_the_piece_height_rule_compares_with_the_blob_ink_not_its_padded_crop() -> None:
    crop = np.zeros((80, 100), np.uint8)  # two rings in a crop padded by 10 px above and below
    cv2.ellipse(crop, (28, 40), (18, 30), 0, 0, 360, 255, 4)
    cv2.ellipse(crop, (70, 40), (18, 30), 0, 0, 360, 255, 4)
    crop[38:43, 44:54] = 255
    plan = plan_split(crop)
    assert plan is not None and abs(plan.ink_height - 64) <= 3  # 60 + the stroke, not the crop's 80


def _model_rows(n: int, digit: int, p: float, nad: float) -> np.ndarray:
    row = np.zeros((n, 11), np.float32)
    row[:, digit], row[:, 10] = p, nad
    row[:, (digit + 1) % 10] = 1.0 - p - nad
    return row


def test_a_wide_blob_the_model_accepts_is_one_digit_with_a_not_a_digit_answer_only() -> None:
    crop = np.zeros((60, 85), np.uint8)
    cv2.ellipse(crop, (42, 30), (36, 26), 0, 0, 360, 255, 4)  # a wide 0: 1.4 x its height
    seg = Segment(box=(0, 0, 78, 56), tile=np.zeros((28, 28), np.uint8), crop=crop)
    row = _model_rows(1, 0, 0.7, 0.02)  # read as 0 at 0.7: not sure enough for a digits-only model

    def predict(tiles: np.ndarray) -> np.ndarray:
        return _model_rows(len(tiles), 0, 0.7, 0.02)

    _, _, trace = split_touching([seg], row, predict, lambda p: p[:, :10], None)
    assert trace[0][0] is not None  # digits only: a blob wider than tall and not read surely is tried
    _, _, trace = split_touching([seg], row, predict, lambda p: p[:, :10], lambda p: p[10] >= 0.34)
    assert trace[0][0] is None  # the model said "a digit", and it knows two digits when it sees them
    rejected = _model_rows(1, 0, 0.2, 0.7)
    _, _, trace = split_touching([seg], rejected, predict, lambda p: p[:, :10], lambda p: p[10] >= 0.34)
    assert trace[0][0] is not None  # ... and when it says "not a digit", the blob is cut


def test_the_fast_component_labelling_gives_what_opencvs_default_gives() -> None:
    from digitkit.runtime.segment import components

    rng = np.random.default_rng(3)
    binary = (cv2.GaussianBlur(rng.random((240, 320)).astype(np.float32), (0, 0), 3) > 0.52).astype(np.uint8)
    n, labels, stats, centroids = components(binary)
    m, labels2, stats2, centroids2 = cv2.connectedComponentsWithStats(binary, connectivity=8)
    assert n == m and n > 10
    assert (labels == labels2).all() and (stats == stats2).all() and np.allclose(centroids, centroids2)


def test_a_hint_steeper_than_the_search_range_still_gets_an_angle() -> None:
    from digitkit.runtime.deskew import MAX_ANGLE, profile_angle

    ink = np.zeros((300, 300), np.uint8)
    for k in range(3):  # rings climbing at 50 degrees: a hint past the +-35 degree range
        cv2.ellipse(ink, (60 + 60 * k, 240 - 72 * k), (15, 24), 0, 0, 360, 255, 3)
    for hint in (50.0, -60.0):
        angle = profile_angle((ink > 100).astype(np.uint8), hint, 12.0)
        assert abs(angle) <= MAX_ANGLE and abs(angle - np.sign(hint) * MAX_ANGLE) <= 12.0 + 2.0

"""Preprocessing and segmentation on generated pictures: polarity, lighting, thresholds, the MNIST
normalisation, and finding the right boxes in the right order."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from synth import synth_digits

from digitkit.runtime.errors import InferenceError
from digitkit.runtime.preprocess import as_mnist_tile, detect_polarity, ink_map, mnist_normalise, stroke_width, to_gray
from digitkit.runtime.segment import SegmentConfig, find_digits

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from photos import make_photo, paper, shape_mask  # noqa: E402


def segments_of(image: np.ndarray) -> list:
    m = ink_map(to_gray(image))
    return find_digits(m.ink, m.threshold)


def iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_to_gray_accepts_the_usual_arrays() -> None:
    bgr = np.zeros((10, 12, 3), np.uint8)
    bgr[..., 2] = 200
    assert to_gray(bgr).shape == (10, 12)
    assert to_gray(np.dstack([bgr, np.full((10, 12), 255, np.uint8)])).shape == (10, 12)
    assert to_gray(np.ones((5, 5), np.float32)).max() == 255  # floats in [0, 1]
    assert to_gray(np.full((5, 5), 65535, np.uint16)).max() == 255
    with pytest.raises(InferenceError, match="not an image"):
        to_gray(np.zeros((4, 4, 7), np.uint8))
    with pytest.raises(InferenceError, match="not an image"):
        to_gray(np.zeros((0, 3), np.uint8))


def test_polarity_is_detected_both_ways() -> None:
    rng = np.random.default_rng(0)
    x, _ = synth_digits(3, 5)
    photo, _ = make_photo(list(x), rng)
    gray = to_gray(photo)
    assert detect_polarity(gray) == "dark-on-light"
    assert detect_polarity(cv2.bitwise_not(gray)) == "light-on-dark"


@pytest.mark.parametrize("seed", range(8))
def test_blank_pages_give_no_candidates(seed: int) -> None:
    rng = np.random.default_rng(seed)
    photo, boxes = make_photo([], rng)
    assert boxes == []
    assert segments_of(photo) == []
    assert segments_of(cv2.bitwise_not(photo)) == []  # a blank blackboard too


def test_lighting_is_divided_out() -> None:
    # Strong gradient, no ink: the ink map stays below the threshold everywhere.
    ramp = np.tile(np.linspace(60, 240, 640, dtype=np.float32), (480, 1))
    m = ink_map(ramp.astype(np.uint8))
    assert int((m.ink >= m.threshold).sum()) == 0


@pytest.mark.parametrize("seed", range(6))
def test_segments_match_the_written_digits_left_to_right(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    x, _ = synth_digits(4, seed)
    k = 1 + seed % 4
    photo, boxes = make_photo(list(x[:k]), rng)
    found = segments_of(photo)
    assert len(found) == k
    xs = [s.box[0] for s in found]
    assert xs == sorted(xs)
    for seg, truth in zip(found, boxes, strict=True):
        assert iou(seg.box, truth) > 0.6, (seg.box, truth)
        assert seg.tile.shape == (28, 28) and seg.tile.dtype == np.uint8


def test_broken_strokes_merge_and_specks_and_rules_are_dropped() -> None:
    rng = np.random.default_rng(3)
    sheet = paper(rng)
    tile = np.zeros((28, 28), np.uint8)
    cv2.line(tile, (14, 4), (14, 11), 255, 3)  # a "1" broken in two pieces
    cv2.line(tile, (14, 16), (14, 24), 255, 3)
    big = cv2.resize(tile, (112, 112), interpolation=cv2.INTER_NEAREST).astype(np.float32) / 255
    sheet[150:262, 200:312] *= 1 - 0.8 * big[..., None]
    for sx, sy in ((50, 50), (500, 400), (600, 80)):  # specks
        cv2.circle(sheet, (sx, sy), 2, (40, 40, 40), -1)
    cv2.line(sheet, (0, 470), (639, 470), (30, 30, 30), 4)  # a page edge / rule across the picture
    cv2.line(sheet, (120, 300), (420, 300), (30, 30, 30), 4)  # an underline
    found = segments_of(np.clip(sheet, 0, 255).astype(np.uint8))
    assert len(found) == 1
    x, y, w, h = found[0].box
    assert 200 <= x + w / 2 <= 312 and h > 80  # both halves of the "1", one box


def test_a_long_row_of_touching_digits_alone_is_no_underline_but_a_lone_rule_is() -> None:
    """Six touching rings (a phone number written in one stroke) are 5 heights wide: as flat as an underline,
    and with no upright digit beside them to compare with. Columns cross a row of digits twice; a rule once."""
    row = np.zeros((200, 600), np.uint8)
    for k in range(6):
        cv2.ellipse(row, (70 + 80 * k, 100), (42, 40), 0, 0, 360, 255, 8)
    found = find_digits(row, 100)
    assert len(found) == 1 and found[0].box[2] > 4 * found[0].box[3]
    rule = np.zeros((200, 600), np.uint8)
    cv2.line(rule, (20, 110), (580, 90), 255, 9)  # a slanted rule
    pts = np.array([(x, 140 + int(6 * np.sin(x / 25))) for x in range(20, 580, 4)], np.int32)
    cv2.polylines(rule, [pts], False, 255, 7)  # a wavy underline
    assert find_digits(rule, 100) == []


def test_a_digit_broken_across_two_blobs_of_one_line_joins_them() -> None:
    """A 5 written in two strokes, its flag touching the digit before and its bowl the one after: the two blobs
    are one, so the sequence model reads that 5 once (not once in each blob). Separate digits side by side, and
    a digit of the next line below, stay apart."""
    ink = np.zeros((300, 420), np.uint8)
    cv2.rectangle(ink, (20, 40), (120, 120), 255, 6)  # a blob of touching digits, 100 x 80
    cv2.line(ink, (120, 45), (170, 45), 255, 6)  # ... with the next digit's flag joined to it
    cv2.ellipse(ink, (150, 95), (25, 22), 0, -120, 150, 255, 6)  # the bowl under the flag, not touching it
    cv2.rectangle(ink, (176, 85), (236, 120), 255, 6)  # ... but touching the digit after
    cv2.rectangle(ink, (290, 40), (340, 120), 255, 6)  # a separate digit
    cv2.rectangle(ink, (140, 190), (190, 270), 255, 6)  # a digit in the next line, under the broken one
    boxes = sorted(s.box for s in find_digits(ink, 100))
    assert len(boxes) == 3, boxes
    joined = boxes[0]
    assert joined[0] <= 22 and joined[0] + joined[2] >= 234 and joined[1] + joined[3] <= 130, joined
    assert any(b[0] >= 285 and b[1] < 50 for b in boxes[1:]) and any(b[1] >= 185 for b in boxes[1:]), boxes
    apart = sorted(s.box for s in find_digits(ink, 100, SegmentConfig(join_overlap=None)))
    assert len(apart) == 4, apart


def test_a_fives_flag_drawn_apart_joins_its_body_and_a_dash_beside_a_digit_does_not() -> None:
    """The flag sits at the top and reaches out to the right: the union is 1.3 heights wide, wider than the
    1.1 a digit gets, yet one digit. A mark of the same size at mid-height (a dash) stays apart."""
    def body() -> np.ndarray:
        ink = np.zeros((300, 400), np.uint8)
        cv2.polylines(ink, [np.array([(110, 100), (104, 150), (123, 150)], np.int32)], False, 255, 8)  # stem
        cv2.ellipse(ink, (135, 180), (35, 32), 0, -110, 150, 255, 8)  # and bowl, one stroke
        return ink

    five = body()
    cv2.line(five, (160, 104), (245, 96), 255, 8)  # the flag, drawn apart from the stem, out to the right
    boxes = [s.box for s in find_digits(five, 100)]
    assert len(boxes) == 1, boxes
    x, y, w, h = boxes[0]
    assert x <= 106 and x + w >= 245 and w > 1.1 * h, boxes
    dash = body()
    cv2.line(dash, (185, 150), (250, 150), 255, 8)  # a dash at mid-height, just after the digit
    assert [s.box[0] + s.box[2] for s in find_digits(dash, 100)] == [175]  # the digit alone, dash not joined


def test_the_two_interlocking_halves_of_a_lone_broken_digit_are_one_and_two_lines_stay_apart() -> None:
    """A lone 5 broken across the middle: its top half (stem and flag) and its bowl overlap in rows and columns,
    and together are taller than either, the tallest candidate. Two digits, one above the other, do not overlap
    in rows: they stay two."""
    ink = np.zeros((300, 300), np.uint8)
    cv2.line(ink, (100, 60), (180, 60), 255, 8)  # flag
    cv2.line(ink, (100, 60), (96, 140), 255, 8)  # stem reaching below the bowl's top
    cv2.ellipse(ink, (140, 185), (48, 55), 0, -100, 150, 255, 8)  # the bowl, starting above the stem's end
    found = find_digits(ink, 100)
    parts = find_digits(ink, 100, SegmentConfig(join_overlap=None))
    assert len(found) == 1, [s.box for s in found]
    assert found[0].box[3] > 1.15 * 115, found[0].box  # taller than the bowl, the tallest part
    two = np.zeros((400, 300), np.uint8)
    cv2.rectangle(two, (100, 40), (160, 140), 255, 8)
    cv2.rectangle(two, (100, 170), (160, 270), 255, 8)
    assert len(find_digits(two, 100)) == 2
    assert len(parts) == 1  # join_overlap off: the rule does not depend on it


@settings(max_examples=40, deadline=None)
@given(h=st.integers(5, 200), w=st.integers(2, 200), seed=st.integers(0, 10_000))
def test_mnist_normalisation_box_and_centre_of_mass(h: int, w: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ink = np.zeros((h + 10, w + 10), np.uint8)
    ink[5:5 + h, 5:5 + w] = rng.integers(128, 256, (h, w), dtype=np.uint8)
    tile = mnist_normalise(ink)
    assert tile.shape == (28, 28)
    ys, xs = np.nonzero(tile)
    assert max(np.ptp(ys), np.ptp(xs)) + 1 <= 21  # the longer side fits the 20-pixel box
    if h >= 2 * w and w >= 10:
        assert np.ptp(ys) > np.ptp(xs)  # aspect kept: tall stays tall
    m = cv2.moments(tile)
    assert abs(m["m10"] / m["m00"] - 14) <= 1.0 and abs(m["m01"] / m["m00"] - 14) <= 1.0


def test_an_mnist_tile_passes_unchanged_in_both_polarities() -> None:
    x, _ = synth_digits(20, 9)
    x[:, :3, :] = 0  # an MNIST frame: background at the border
    x[:, -3:, :] = 0
    x[:, :, :3] = 0
    x[:, :, -3:] = 0
    x[:, 10, 10] = 255
    for tile in x:
        assert np.array_equal(as_mnist_tile(tile), tile)
        assert np.array_equal(as_mnist_tile(255 - tile), tile)
    assert as_mnist_tile(np.zeros((28, 28), np.uint8)) is None
    assert as_mnist_tile(np.full((28, 28), 255, np.uint8)) is None


def test_stroke_width_separates_writing_from_blobs() -> None:
    x, _ = synth_digits(50, 2)
    assert max(stroke_width(t) for t in x) < 0.6
    rng = np.random.default_rng(0)
    for kind in ("disk", "square"):
        ink = (shape_mask(kind, rng, 100) * 255).astype(np.uint8)
        assert stroke_width(mnist_normalise(ink)) > 0.7


def test_two_lines_are_read_top_to_bottom_not_interleaved() -> None:
    rng = np.random.default_rng(12)
    x, _ = synth_digits(4, 3)
    top, top_boxes = make_photo(list(x[:2]), rng, size=(640, 240))
    bottom, bottom_boxes = make_photo(list(x[2:]), rng, size=(640, 240))
    found = segments_of(np.vstack([top, bottom]))
    assert len(found) == 4
    want = top_boxes + [(bx, by + 240, bw, bh) for bx, by, bw, bh in bottom_boxes]
    for seg, truth in zip(found, want, strict=True):
        assert iou(seg.box, truth) > 0.6, (seg.box, truth)

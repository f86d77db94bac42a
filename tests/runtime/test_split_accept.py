"""The touching-digit splitter's judgement of a split (runtime/split.py): a number wider than any single
letter is judged as a sequence, a blob about as wide as tall piece by piece; and the width prior."""

from __future__ import annotations

import cv2
import numpy as np

from digitkit.runtime.segment import Segment
from digitkit.runtime.split import (
    PIECE_SURE,
    WIDE_ASPECT,
    accept_split,
    plan_split,
    span_log_widths,
    split_touching,
    stretch_scores,
)


def _rejected(row: np.ndarray) -> bool:
    return bool(row[10] >= 0.3)


def _rows(tops: list[float], nad: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    rows = np.zeros((len(tops), 11), np.float32)
    for i, t in enumerate(tops):
        rows[i, :10] = (1.0 - t - nad) / 9  # the rest spread over the other digits
        rows[i, 3], rows[i, 10] = t, nad
    return rows, rows[:, :10]


def test_a_wide_blob_stands_on_the_whole_sequence_a_square_one_on_every_piece() -> None:
    rows, digits = _rows([0.97, 0.95, 0.6])  # one piece read less surely than PIECE_SURE
    assert 0.6 < PIECE_SURE
    tall = np.array([0.9, 0.95, 0.85])
    assert accept_split(rows, digits, tall, WIDE_ASPECT + 0.4, _rejected)
    assert not accept_split(rows, digits, tall, 1.1, _rejected)  # as wide as one letter: every piece sure
    sure, sure_d = _rows([0.97, 0.95, 0.9])
    assert accept_split(sure, sure_d, tall, 1.1, _rejected)


def test_a_wide_split_still_fails_on_a_rejected_a_weak_or_a_short_piece() -> None:
    tall = np.array([0.9, 0.9])
    wide = WIDE_ASPECT + 0.5
    rows, digits = _rows([0.97, 0.9], nad=0.35)  # the model calls both "not a digit"
    assert not accept_split(rows, digits, tall, wide, _rejected)
    rows, digits = _rows([0.97, 0.2])  # one piece hardly a digit at all
    assert not accept_split(rows, digits, tall, wide, _rejected)
    rows, digits = _rows([0.6, 0.6])  # every piece doubtful: the sequence's mean is too low
    assert not accept_split(rows, digits, tall, wide, _rejected)
    rows, digits = _rows([0.97, 0.95])
    assert not accept_split(rows, digits, np.array([0.9, 0.3]), wide, _rejected)  # a tick, not a digit
    assert accept_split(rows, digits, tall, wide, _rejected)


def test_a_piece_read_as_1_must_be_sure_even_in_a_wide_blob() -> None:
    wide = WIDE_ASPECT + 1.0
    tall = np.array([0.9, 0.9, 0.9])
    rows, digits = _rows([0.97, 0.97, 0.7])
    assert accept_split(rows, digits, tall, wide, _rejected)  # a less sure 3 among sure ones: a number
    rows[2, :10], rows[2, 1] = 0.28 / 9, 0.7  # ... but a less sure 1 is any stroke of a word
    digits = rows[:, :10]
    assert digits[2].argmax() == 1 and not accept_split(rows, digits, tall, wide, _rejected)
    rows[2, 1] = 0.95
    assert accept_split(rows, rows[:, :10], tall, wide, _rejected)


def test_the_width_prior_marks_down_slivers_and_pairs_but_not_a_digit_wide_stretch() -> None:
    p = np.full((3, 10), 0.01, np.float32)
    p[:, 1] = 0.91
    aspect = np.log(np.full(3, 0.4, np.float32))
    widths = np.log(np.array([0.08, 0.4, 1.6], np.float32))  # a sliver, a digit's width, two digits' width
    plain = stretch_scores(p, aspect, 0.0)
    assert np.allclose(plain, plain[0])
    s = stretch_scores(p, aspect, 0.0, widths, width_weight=1.0)
    assert s[1] > s[0] + 1.0 and s[1] > s[2] + 1.0


def _pair() -> np.ndarray:
    crop = np.zeros((60, 100), np.uint8)
    cv2.ellipse(crop, (25, 30), (18, 26), 0, 0, 360, 255, 4)
    cv2.ellipse(crop, (68, 30), (18, 26), 0, 0, 360, 255, 4)
    crop[28:33, 40:54] = 255
    return crop


def test_span_widths_are_measured_against_the_blob_ink_height() -> None:
    plan = plan_split(_pair())
    assert plan is not None
    n = len(plan.paths)
    whole = plan.spans.index((0, n - 1))
    w = np.exp(span_log_widths(plan))
    assert abs(w[whole] - 100 / plan.ink_height) < 0.15  # the whole blob: its width over its ink's height
    assert (w > 0).all() and (w <= w[whole] + 1e-6).all()


def test_split_touching_keeps_a_less_sure_split_of_a_wide_blob_only() -> None:
    crop = _pair()
    plan = plan_split(crop)
    assert plan is not None
    n = len(plan.paths)
    mids = plan.paths.mean(1) / plan.scale
    middle = int(np.argmin(np.abs(mids - 47)))
    rows = np.zeros((len(plan.spans), 11), np.float32)
    rows[:, 10] = 0.95  # every stretch "not a digit"...
    rows[:, 0] = 0.05
    for k, span in enumerate(plan.spans):
        if span in ((0, middle), (middle, n - 1)):  # ... but the two rings: a 0 at 0.97 and one at 0.65
            rows[k] = 0.0
            rows[k, 0] = 0.97 if span[0] == 0 else 0.65
            rows[k, 6] = 1.0 - rows[k, 0] - 0.02
            rows[k, 10] = 0.02

    def predict(tiles: np.ndarray) -> np.ndarray:
        assert len(tiles) == len(rows)
        return rows

    blob_row = np.zeros((1, 11), np.float32)
    blob_row[0, 10] = 0.9  # the model rejects the blob as a whole
    tile = np.zeros((28, 28), np.uint8)
    wide = Segment(box=(0, 0, 100, 60), tile=tile, crop=crop)  # 1.67 x its height
    segs, out, trace = split_touching([wide], blob_row, predict, lambda p: p[:, :10], _rejected)
    assert [plan.spans[k] for k in trace[0][1]] == [(0, middle), (middle, n - 1)]
    assert len(segs) == 2 and [int(r[:10].argmax()) for r in out] == [0, 0]
    squarish = Segment(box=(0, 0, 100, 80), tile=tile, crop=crop)  # 1.25 x: the 0.65 piece is not sure enough
    segs, out, trace = split_touching([squarish], blob_row, predict, lambda p: p[:, :10], _rejected)
    assert trace[0][1] == [] and len(segs) == 1 and segs[0] is squarish

"""Tilted lines: estimate the angle of the writing and turn the ink map upright before it is segmented.

For several candidates the angle comes from the classic projection-profile test near the slope of their
centres: ink pixels are projected onto the axis perpendicular to each trial angle, and the angle whose
profile is the most peaked (the largest sum of squared bin counts) is the one the lines of writing run along.
For one wide blob (a row of touching digits) it is the least-squares slope of its ink: there the profile
test follows the blob's longest strokes rather than the row. It runs only when the first segmentation hints
at a tilt (the candidates' centres climb or fall from left to right, or one blob is wider than a digit or
its ink runs along a slope like a row's), so an upright page costs nothing more.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from digitkit.runtime.preprocess import InkMap
from digitkit.runtime.segment import Segment, SegmentConfig, find_digits

MAX_ANGLE = 35.0  # degrees: steeper is read as it is
MIN_ANGLE = 4.0  # degrees: less than this is handwriting's own wobble, not worth a resampling
_STEP = 1.0
_POINTS = 2000  # ink pixels sampled for the profile test
HINT_ANGLE = 6.0  # degrees: the candidates' slope that asks for the test (twice that from a single pair)


def profile_angle(binary: np.ndarray, around: float = 0.0, span: float = MAX_ANGLE) -> float:
    """The angle (degrees, counter-clockwise positive as the picture is displayed: a line rising to the
    right) in ``around +- span`` whose projection profile of the 0/1 ink ``binary`` is the most peaked."""
    ys, xs = np.nonzero(binary)
    if len(xs) < 20:
        return 0.0
    if len(xs) > _POINTS:
        pick = np.random.default_rng(0).choice(len(xs), _POINTS, replace=False)
        ys, xs = ys[pick], xs[pick]
    x = xs.astype(np.float32) - xs.mean()
    y = ys.astype(np.float32) - ys.mean()
    # Coarse to fine: every 3 degrees, then every degree around the best. A hint steeper than the search range
    # (two candidates 50 degrees apart) searches the range's end: unclamped, the range was empty and the
    # picture failed to read (a doodle page did).
    around = float(np.clip(around, -MAX_ANGLE, MAX_ANGLE))
    coarse = np.arange(max(-MAX_ANGLE, around - span), min(MAX_ANGLE, around + span) + 1e-6, 3 * _STEP)
    best = _best(x, y, coarse)
    return _best(x, y, np.arange(max(-MAX_ANGLE, best - 2 * _STEP), min(MAX_ANGLE, best + 2 * _STEP) + 1e-6, _STEP))


def _best(x: np.ndarray, y: np.ndarray, angles: np.ndarray) -> float:
    th = np.deg2rad(angles).astype(np.float32)
    # Distance of each point across a line at angle a (y grows downward, so a rising line has -dy/dx).
    proj = y[None, :] * np.cos(th)[:, None] + x[None, :] * np.sin(th)[:, None]
    lo = float(proj.min())
    bins = np.clip(((proj - lo) / 1.5).astype(np.int64), 0, None)
    scores = [float(np.square(np.bincount(b)).sum()) for b in bins]
    return float(angles[int(np.argmax(scores))])


def ink_slope(binary: np.ndarray) -> float:
    """The angle (degrees, as :func:`profile_angle`'s) of the least-squares line through the 0/1 ink
    ``binary``'s pixels, clamped to +-MAX_ANGLE: the slope of a row of touching digits, whose strokes lean
    every way but whose ink as a whole runs along the row. It falls short of a steep slope by about a tenth (26
    degrees for a row of upright rings at 30); iterated to the ink's principal axis it read fewer of 300 lines of
    touching MNIST training digits (88.0 % exact against 90.3 % level, 82.0 against 81.3 % tilted up to 30)."""
    ys, xs = np.nonzero(binary)
    if len(xs) < 20:
        return 0.0
    x = xs.astype(np.float64) - xs.mean()
    y = ys.astype(np.float64) - ys.mean()
    angle = float(np.degrees(np.arctan2(-(x * y).sum(), (x * x).sum())))
    return float(np.clip(angle, -MAX_ANGLE, MAX_ANGLE))


def tilt_hint(boxes: list[tuple[int, int, int, int]]) -> float | None:
    """A rough angle (degrees) from the candidates' boxes when they hint at a tilted line, else None."""
    if not boxes:
        return None
    if len(boxes) == 1:
        x, y, w, h = boxes[0]
        return 0.0 if w > 1.3 * h else None  # one wide blob: a tilted line of touching digits, maybe
    c = np.array([(x + w / 2, y + h / 2) for x, y, w, h in boxes], np.float32)
    hmed = float(np.median([b[3] for b in boxes]))
    c = c[np.argsort(c[:, 0])]
    d = np.diff(c, axis=0)
    near = (d[:, 0] > 0) & (d[:, 0] < 3 * hmed) & (np.abs(d[:, 1]) < 1.2 * d[:, 0])
    if not near.any():
        return None
    angle = float(np.degrees(np.arctan2(-d[near, 1], d[near, 0])).mean())
    # Upright digits wobble up and down by a tenth of their height: a pair of neighbours can look 10 degrees
    # off, a line of several much less. Only a clearer slope is worth the profile test.
    return angle if abs(angle) >= (HINT_ANGLE if near.sum() > 1 else 2 * HINT_ANGLE) else None


def rotate(ink: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """``ink`` turned by ``angle`` degrees about its centre (so a line at ``angle`` becomes level), on a
    canvas big enough to hold all of it; and the 2x3 matrix from the turned picture back to ``ink``'s."""
    h, w = ink.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), -angle, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(np.ceil(w * cos + h * sin)), int(np.ceil(w * sin + h * cos))
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    out = cv2.warpAffine(ink, m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=0)
    return out, cv2.invertAffineTransform(m)


def box_back(box: tuple[int, int, int, int], back: np.ndarray) -> tuple[int, int, int, int]:
    """The upright box (x, y, w, h) around ``box`` of the turned picture, in the original picture."""
    x, y, w, h = box
    corners = np.array([[x, y, 1], [x + w, y, 1], [x, y + h, 1], [x + w, y + h, 1]], np.float32)
    pts = corners @ back.T
    x0, y0 = np.floor(pts.min(0)).astype(int)
    x1, y1 = np.ceil(pts.max(0)).astype(int)
    return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


# A lone blob whose box is not wider than 1.3 heights is still a row of touching digits to turn when its ink is
# this many times longer than wide along an axis within MAX_ANGLE of level: a row of four digits tilted by 30
# degrees has a box about as wide as tall. But one digit lying on its side is long too (a slanted 8 in a scene
# tilted by 30 degrees, turned and read "22"). Of 300 lines of touching MNIST training digits tilted up to 30
# degrees (benchmarks/lines.py --split train --tilt 30) and 1 000 tilted scenes of separate MNIST training
# digits (photos.py's photo_set, seed 5), read exactly: without this 244 and 974; at 1.5 255 and 972; 1.8 254
# and 973; 2.0 252 and 973; 2.2 251 and 974. Level lines and the non-digit pages of seeds 5 and 7 unchanged.
ROW_ELONGATION = 2.2


def row_like(inkmap: InkMap, box: tuple[int, int, int, int]) -> bool:
    """Whether the ink in ``box`` is elongated (its principal axes' spread at least ROW_ELONGATION to 1) along
    an axis within MAX_ANGLE of level: a row of digits, at whatever slope, rather than one digit."""
    x, y, w, h = box
    ys, xs = np.nonzero(inkmap.ink[y:y + h, x:x + w] >= inkmap.threshold)
    if len(xs) < 20:
        return False
    spread, axes = np.linalg.eigh(np.cov(np.stack([xs, ys]).astype(np.float64)))
    angle = (np.degrees(np.arctan2(-axes[1, 1], axes[0, 1])) + 90.0) % 180.0 - 90.0
    return bool(spread[1] >= ROW_ELONGATION ** 2 * max(spread[0], 1e-9) and abs(angle) <= MAX_ANGLE)


def _found_turned(inkmap: InkMap, angle: float, config: SegmentConfig) -> list[Segment]:
    """The candidates found on ``inkmap`` turned by ``angle`` degrees: boxes back in the ink map's pixels, crops in
    the turned picture's, with the way back in ``Segment.back``."""
    turned, back = rotate(inkmap.ink, angle)
    found = find_digits(turned, inkmap.threshold, config)
    return [dataclasses.replace(s, box=box_back(s.box, back), back=back) for s in found]


def upright(inkmap: InkMap, segments: list[Segment], config: SegmentConfig) -> list[Segment]:
    """The candidates again, found on the ink map turned upright when the first ones hint at a tilted line
    (boxes in the ink map's pixels; crops in the turned picture's, with the way back in ``Segment.back``)."""
    hint = tilt_hint([s.box for s in segments])
    if hint is None and not (len(segments) == 1 and row_like(inkmap, segments[0].box)):
        return segments
    binary = np.zeros(inkmap.ink.shape, np.uint8)
    for x, y, w, h in (s.box for s in segments):  # only the candidates' ink: specks and shadows do not vote
        binary[y:y + h, x:x + w] = inkmap.ink[y:y + h, x:x + w] >= inkmap.threshold
    # One blob: the slope of its ink (a least-squares line through it). The profile test would follow the
    # blob's longest strokes instead: a 3's tail and a 5's flag drawn in parallel turned a level "355" by
    # 25 degrees, and 72 of 300 level lines of touching MNIST training digits were turned by 4-35 degrees
    # (28 % of those then read wrong, against 11 % of the rest). With the slope, 86.0 -> 90.3 % of those 300
    # lines read exactly, and 78.0 -> 81.3 % of 300 tilted up to 30 degrees either way (benchmarks/lines.py
    # --split train [--tilt 30]); a profile test within 3 or 6 degrees of the slope read 88.7 % and 81.7 %.
    # Several candidates: the profile test near the slope of their centres.
    angle = ink_slope(binary) if len(segments) == 1 else profile_angle(binary, hint, 12.0)
    if abs(angle) < MIN_ANGLE:
        return segments
    return _found_turned(inkmap, angle, config)


# A picture read as no digit at all, whose candidates were not turned: a row of touching digits at a slope the
# first look missed (its box about as wide as tall, its ink less elongated than ROW_ELONGATION asks: two or three
# digits at 20-30 degrees), or such a row beside one more digit (the pair's centres 11 degrees apart, under the
# hint's 12, and the row rejected took the digit with it as a line of text). It is read again turned by the slope
# of its biggest candidate's ink, and that reading is kept when it finds a row: ROW_MIN_DIGITS digits or more.
# Only for at most ROW_MAX_CANDIDATES candidates (more give their own slope, tilt_hint) and a biggest one at least
# ROW_MIN_WIDTH of its height wide: on the non-digit pages of seeds 5 and 7, without those two limits, words and
# letters turned by one letter's slope gave 9 more pages with digits; with them, one (a tick turned 34 degrees,
# read "13"). Measured on MNIST training digits (benchmarks/lines.py's line_set, photos.py's photo_set), read
# exactly without / with it: 300 lines tilted up to 30 degrees 258 / 267; 2 000 level lines of line seeds 0 and 3
# 1 858 / 1 861 and 1 852 / 1 853 (digit errors 189 / 183 and 189 / 185); 1 000 scenes tilted up to 30 degrees
# (seed 6) 973 / 974, 1 000 level scenes (seed 5) 982 / 982.
ROW_MAX_CANDIDATES = 2
ROW_MIN_WIDTH = 0.8
ROW_MIN_DIGITS = 2


def turned_row(inkmap: InkMap, boxes: list[tuple[int, int, int, int]], config: SegmentConfig) -> list[Segment]:
    """The candidates of a picture read as no digit, found again on the ink map turned by the least-squares slope
    of its biggest candidate's ink (boxes in the ink map's pixels, as :func:`upright`'s); [] when the picture
    does not qualify (see ROW_MAX_CANDIDATES, ROW_MIN_WIDTH) or that slope is under MIN_ANGLE."""
    if not boxes or len(boxes) > ROW_MAX_CANDIDATES:
        return []
    x, y, w, h = max(boxes, key=lambda b: b[2] * b[3])
    if w < ROW_MIN_WIDTH * h:
        return []
    angle = ink_slope((inkmap.ink[y:y + h, x:x + w] >= inkmap.threshold).astype(np.uint8))
    if abs(angle) < MIN_ANGLE:
        return []
    return _found_turned(inkmap, angle, config)

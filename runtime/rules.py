"""Lines that are not digits: ruled paper, grid paper, box and cell borders, the edge of a sheet.

They are found by a morphological opening with a long, one-pixel-thin horizontal (and vertical) kernel:
only ink lying on a straight horizontal (vertical) run at least half the picture's width (height) survives
it. A run counts as a rule when it spans the picture (from within 10 % of one edge to within 10 % of the
other) or is at least 3/4 of it; a handwritten bar (the top of a 7 or a 5) in a tight crop does neither.
The rule's pixels are taken out of the ink map, so a digit written across a line comes apart from it.
"""

from __future__ import annotations

import cv2
import numpy as np

from digitkit.runtime.strokes import stroke_thickness

MIN_LENGTH = 0.5  # of the picture's side: shorter straight runs are left alone
SPAN_MARGIN = 0.1  # a run reaching this close to both edges spans the picture
ALWAYS = 0.75  # a run this long is a rule wherever it is (if it is most of the ink it touches)
GAP = 4  # holes this long (pixels) in a ragged rule are bridged


def _rules(binary: np.ndarray, axis: int) -> np.ndarray:
    """Mask of the rules along ``axis`` (1 = horizontal, 0 = vertical) in a 0/1 uint8 image."""
    side = binary.shape[axis]
    length = max(15, int(MIN_LENGTH * side))
    if int(binary.sum(axis).max()) < length:  # no row (column) holds that much ink: no rule, skip the opening
        return np.zeros_like(binary)
    kernel = np.ones((1, length) if axis == 1 else (length, 1), np.uint8)
    # A rule spanning the picture: a thin rule photographed at a low threshold is ragged (it wavers by a pixel
    # and has holes a few pixels long, so no single row or column holds one unbroken run). Widened by a pixel
    # across its direction and with holes of up to GAP pixels along it filled, it does. Only a run from edge
    # to edge is taken from the mended picture: mended, a tall digit's broken stem would be long enough for
    # the next test too.
    across = np.ones((3, 1) if axis == 1 else (1, 3), np.uint8)
    along = np.ones((1, GAP + 1) if axis == 1 else (GAP + 1, 1), np.uint8)
    mended = cv2.morphologyEx(cv2.dilate(binary, across), cv2.MORPH_CLOSE, along)

    def spans(start: int, extent: int, _: np.ndarray) -> bool:
        return start <= SPAN_MARGIN * side and start + extent >= (1 - SPAN_MARGIN) * side

    spanning = _runs(cv2.morphologyEx(mended, cv2.MORPH_OPEN, kernel), axis, spans)
    # A long unbroken run that does not span: a rule that fades out, or the stem of a tall 1, 4, 7 or 9 in a
    # tight crop. A rule is most of the ink it is connected to; a stem is a part of its digit.
    whole = cv2.connectedComponentsWithStats(binary, connectivity=8) if (
        ALWAYS * side <= int(binary.sum(axis).max())) else None

    def long_rule(start: int, extent: int, run: np.ndarray) -> bool:
        if extent < ALWAYS * side or whole is None:
            return False
        ids = np.unique(whole[1][run])
        return int(np.count_nonzero(run)) >= 0.5 * whole[2][ids[ids > 0], cv2.CC_STAT_AREA].sum()

    strict = _runs(cv2.morphologyEx(binary, cv2.MORPH_OPEN, kernel), axis, long_rule)
    return (spanning | strict) & binary


def _runs(opened: np.ndarray, axis: int, is_rule) -> np.ndarray:
    """The components of an opened 0/1 image that ``is_rule(start, extent, their pixels)`` accepts, as a mask."""
    if not opened.any():
        return opened
    n, labels, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    keep = np.zeros(n, bool)
    for i in range(1, n):
        x, y, w, h = stats[i, :4]
        start, extent = (x, w) if axis == 1 else (y, h)
        keep[i] = is_rule(int(start), int(extent), labels == i)
    return keep[labels].astype(np.uint8)


def remove_rules(ink: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """The ink map without its rules, and the mask of what was removed (for ``--explain``).

    The removed band is widened so the rule's soft (blurred) edges go too.
    """
    binary = (ink >= threshold).astype(np.uint8)
    if min(binary.shape) < 16:
        return ink, np.zeros_like(binary)
    mask = _rules(binary, 1) | _rules(binary, 0)
    if not mask.any():
        return ink, mask
    # The rule's blurred edges are fainter than the threshold but still ink (and a lower threshold may be
    # chosen once the rules are gone): widen the band by about half the rule's own width each side.
    r = max(1, int(round(stroke_thickness(mask) / 2)))
    wide = cv2.dilate(mask, np.ones((2 * r + 1, 2 * r + 1), np.uint8))
    out = np.where(wide.astype(bool), 0, ink).astype(np.uint8)
    # What is left of a rule that bends or fades (a cell border in a slightly tilted photo) lies along it:
    # a component with nearly all its ink within a few rule widths of the removed rule goes too.
    band = cv2.dilate(mask, np.ones((8 * r + 1, 8 * r + 1), np.uint8)).astype(bool)
    n, labels, stats, _ = cv2.connectedComponentsWithStats((out >= threshold).astype(np.uint8), connectivity=8)
    if n > 1:
        inside = np.bincount(labels[band], minlength=n)
        along = (inside >= 0.8 * stats[:, cv2.CC_STAT_AREA]) & (np.arange(n) > 0)
        if along.any():
            out[along[labels]] = 0
            wide = wide | along[labels].astype(np.uint8)
    return out, wide

"""Stroke thickness normalised towards MNIST's, before a digit is scaled into its 20x20 box.

A thin ballpoint or a fine pencil line is a tenth of an MNIST stroke once a big digit is shrunk to 20
pixels: it comes out as a faint grey hairline, and the model reads a thin-pen 0 as a 1 or a 9 as a 4. A
felt marker can be twice as bold as MNIST's thickest. The thickness is estimated as 2 x area / perimeter of
the binarised strokes (exact for a long even stroke), relative to the digit's longer side; MNIST's training
digits measure 0.078 / 0.12 / 0.19 of their 20-pixel box at the 5th / 50th / 95th percentile. Strokes
outside that range are dilated (or eroded) to the median and redrawn as a clean binary shape, which the
box scaling then anti-aliases as MNIST's own were.
"""

from __future__ import annotations

import cv2
import numpy as np

MNIST_MEDIAN = 0.1175  # median stroke thickness / longer side of the digit's box, 60 000 MNIST training digits
THIN = 0.078  # 5th percentile: thinner strokes are thickened to the median
BOLD = 0.19  # 95th percentile: bolder strokes are thinned to it


def stroke_thickness(binary: np.ndarray) -> float:
    """2 x area / perimeter of a 0/1 uint8 mask: the width of its strokes, in pixels (0 if empty)."""
    area = int(binary.sum())
    if area == 0:
        return 0.0
    contours, _ = cv2.findContours(binary, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    perimeter = sum(cv2.arcLength(c, True) for c in contours)
    return 2.0 * area / max(perimeter, 1.0)


def normalise_strokes(crop: np.ndarray, level: int = 128, against: str = "side") -> np.ndarray:
    """One digit's cleaned ink crop (0 = paper, stroke cores 255) with MNIST-like stroke thickness.

    Crops whose strokes are within MNIST's 5th-95th percentile come back unchanged. The thickness is
    measured relative to the ink box's longer side (``against="side"``: one digit) or its height
    (``"height"``: a row of touching digits, whose longer side is its length).
    """
    binary = (crop >= level).astype(np.uint8)
    ys, xs = np.nonzero(binary)
    if len(xs) < 4:
        return crop
    side = int(np.ptp(ys)) + 1 if against == "height" else max(int(np.ptp(xs)), int(np.ptp(ys))) + 1
    t = stroke_thickness(binary) / side
    if THIN <= t <= BOLD:
        return crop
    target = MNIST_MEDIAN if t < THIN else BOLD
    r = int(round(abs(target - t) * side / 2))
    if r < 1:
        return crop
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    if t < THIN:
        pad = cv2.copyMakeBorder(binary, r, r, r, r, cv2.BORDER_CONSTANT, value=0)
        return (cv2.dilate(pad, kernel) * 255).astype(np.uint8)
    thinned = cv2.erode(binary, kernel)
    if thinned.sum() < 0.3 * binary.sum():  # eroding would break the digit apart: leave it bold
        return crop
    return (thinned * 255).astype(np.uint8)

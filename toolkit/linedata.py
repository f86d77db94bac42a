"""Strips of touching digits (and of marks that are not digits) for training the sequence model.

A line is 1-6 MNIST digits, each scaled to a line height with a per-digit height jitter and a vertical
wobble, each next one slid left until its ink touches the previous ink and then pushed further into it (the
overlap), with a random slant. Non-digit lines are the non-digit tiles of toolkit/negatives.py (letters,
short words, symbols, doodles, scribbles, blobs, grid lines, Fashion-MNIST; never the held-out family) in a
touching row, and printed words (Hershey fonts), labelled with no digits. Each line's ink is then made
thinner or bolder, blurred, and turned into the model's strip by the runtime's own
:func:`digitkit.runtime.sequence.line_input`.

Only training digits are used (never the test set); benchmarks/lines.py measures on lines of test digits.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from digitkit.runtime.sequence import LINE_HEIGHT, LINE_WIDTH, line_input, moved

MAX_LABELS = 8
HERSHEY = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
           cv2.FONT_HERSHEY_TRIPLEX)
WORD_LETTERS = "ABCDEFGHKLMNPRTUVWXYabcdefghkmnoprstuvwxyz"


def _crop(tile: np.ndarray) -> np.ndarray | None:
    ys, xs = np.nonzero(tile > 30)
    if len(xs) == 0:
        return None
    return tile[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32) / 255.0


def touching(glyphs: list[np.ndarray], rng: np.random.Generator, height: float, max_overlap: float) -> np.ndarray:
    """Float (H, W) ink of ``glyphs`` (float crops, scaled already) written in a row, each touching the ink
    before it and pushed into it by up to ``max_overlap`` of ``height``."""
    H = int(max(g.shape[0] for g in glyphs) + 0.2 * height) + 2
    W = int(sum(g.shape[1] for g in glyphs) + 2)
    canvas = np.zeros((H, W), np.float32)
    right = np.full(H, -1, np.int64)
    for g in glyphs:
        gh, gw = g.shape
        y = int((H - gh) / 2 + rng.uniform(-0.08, 0.08) * height)
        y = min(max(y, 0), H - gh)
        ink = g > 0.3
        if right.max() < 0 or not ink.any():
            x = 0 if right.max() < 0 else int(right.max()) + 1
        else:
            rows = np.nonzero(ink.any(1))[0]
            left = ink[rows].argmax(1)
            touch = int(np.max(right[rows + y] - left)) + 1
            touch = max(touch, int(np.max(right)) - gw + 2)
            x = max(0, touch - int(rng.uniform(0, max_overlap) * height))
        x = min(x, W - gw)
        canvas[y:y + gh, x:x + gw] = np.maximum(canvas[y:y + gh, x:x + gw], g)
        cols = np.where(ink.any(1), gw - 1 - np.argmax(ink[:, ::-1], 1), -1)
        right[y:y + gh] = np.maximum(right[y:y + gh], np.where(cols >= 0, x + cols, -1))
    xs = np.nonzero(canvas.max(0) > 0)[0]
    return canvas[:, : xs.max() + 1] if len(xs) else canvas


def _scaled(crop: np.ndarray, s: float) -> np.ndarray:
    return np.clip(cv2.resize(crop, (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s))),
                              interpolation=cv2.INTER_CUBIC), 0, 1)


def digit_line(digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The float ink of MNIST digit tiles in a touching row (MNIST's 20-pixel box scaled to the height)."""
    height = float(rng.uniform(24, 90))
    glyphs = []
    for t in digits:
        c = _crop(t)
        if c is not None:
            glyphs.append(_scaled(c, height * rng.uniform(0.8, 1.2) / 20))
    return touching(glyphs, rng, height, max_overlap=float(rng.choice([0.1, 0.2, 0.3])))


def word_mask(rng: np.random.Generator) -> np.ndarray:
    """A printed word (2-7 letters, Hershey font, sometimes italic), white on black, full size."""
    text = "".join(WORD_LETTERS[i] for i in rng.integers(len(WORD_LETTERS), size=int(rng.integers(2, 8))))
    font = int(HERSHEY[rng.integers(len(HERSHEY))]) | (cv2.FONT_ITALIC if rng.random() < 0.3 else 0)
    scale = float(rng.uniform(1.2, 2.5))
    thick = int(rng.integers(1, 6))
    (w, h), base = cv2.getTextSize(text, font, scale, thick)
    img = np.zeros((h + base + 2 * thick + 4, w + 2 * thick + 4), np.uint8)
    cv2.putText(img, text, (thick + 2, h + thick + 2), font, scale, 255, thick, cv2.LINE_AA)
    return img.astype(np.float32) / 255.0


def tile_line(tiles: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Non-digit tiles (28x28, MNIST's box) in a touching row."""
    height = float(rng.uniform(24, 90))
    glyphs = [_scaled(c, height * rng.uniform(0.8, 1.2) / 20) for c in (_crop(t) for t in tiles) if c is not None]
    if not glyphs:
        return np.zeros((int(height), int(height)), np.float32)
    return touching(glyphs, rng, height, max_overlap=0.2)


def _photo_ink(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The line's ink as the runtime's segmenter hands it over: a slant, bolder or thinner strokes, a soft
    edge; uint8, ink bright on 0."""
    h, w = mask.shape
    pad = int(0.3 * h) + 2
    img = cv2.copyMakeBorder((mask * 255).astype(np.uint8), pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    shear = float(rng.uniform(-0.35, 0.35))
    angle = float(rng.uniform(-4, 4))
    m = cv2.getRotationMatrix2D((img.shape[1] / 2, img.shape[0] / 2), angle, 1.0)
    m[0, 1] += shear
    m[0, 2] -= shear * img.shape[0] / 2
    img = cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR, borderValue=0)
    r = int(rng.integers(-1, 3)) * max(1, round(h / 40))
    if r:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(r) + 1, 2 * abs(r) + 1))
        img2 = cv2.dilate(img, k) if r > 0 else cv2.erode(img, k)
        if (img2 > 128).sum() > 0.3 * (img > 128).sum():
            img = img2
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 1.5)))
    return img


@dataclass(frozen=True)
class LineSet:
    """Strips (N, LINE_HEIGHT, LINE_WIDTH) uint8 and their labels (N, MAX_LABELS) int32, padded; ``lengths``
    (N,) is the number of digits of each (0 for a line of non-digit marks)."""

    x: np.ndarray
    labels: np.ndarray
    lengths: np.ndarray


def make_lines(digits: np.ndarray, labels: np.ndarray, negatives: np.ndarray, n: int, seed: int,
               negative_share: float = 0.2, word_share: float = 0.05, shift: int = 0) -> LineSet:
    """``n`` strips: digit lines of 1-6 digits (2-5 most often) drawn from ``digits``/``labels``, and
    ``negative_share`` of non-digit lines made of ``negatives`` tiles and ``word_share`` printed words.
    ``shift``: each strip moved right by 0 to ``shift`` columns at random (the network reads columns in pairs;
    the runtime reads a doubtful strip a second time moved one column); the lines are the same whatever it is."""
    rng = np.random.default_rng(seed)
    # their own generator, so the lines themselves are those of shift 0
    moves = np.random.default_rng([seed, 1]).integers(0, shift + 1, n) if shift else np.zeros(n, np.int64)
    x = np.zeros((n, LINE_HEIGHT, LINE_WIDTH), np.uint8)
    y = np.zeros((n, MAX_LABELS), np.int32)
    lengths = np.zeros(n, np.int32)
    lengths_p = np.array([0.08, 0.25, 0.25, 0.2, 0.15, 0.07])
    for i in range(n):
        u = rng.random()
        if u < word_share:
            mask = word_mask(rng)
        elif u < negative_share + word_share and len(negatives):
            mask = tile_line(negatives[rng.integers(len(negatives), size=int(rng.integers(1, 5)))], rng)
        else:
            k = int(rng.choice(np.arange(1, 7), p=lengths_p))
            idx = rng.integers(len(digits), size=k)
            mask = digit_line(digits[idx], rng)
            y[i, :k] = labels[idx]
            lengths[i] = k
        strip = line_input(_photo_ink(mask, rng))
        if strip is not None:
            x[i] = moved(strip.pixels, int(moves[i]))
    return LineSet(x, y, lengths)

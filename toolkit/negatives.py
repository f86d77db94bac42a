"""Tiles that are not digits, generated offline, for the model's 11th class "not a digit".

A 99 % MNIST network is confident on anything: it has never seen a letter, a star or a smudge. Training it with
an extra class fed by these families teaches it to say "not a digit" (Dhamija et al. 2018 call this a
background class; Hendrycks et al. 2019 "outlier exposure"). Every tile goes through the runtime's own
:func:`digitkit.runtime.preprocess.mnist_normalise`, so it looks exactly like a candidate the reader would cut
out of a photo.

Families (see :data:`FAMILIES`): pen strokes people write that are not digits (letters and words in Hershey and
DejaVu fonts, symbols and operators, doodles, scribbles), what a bad segmentation produces (partial digits,
two digits in one tile), and other marks (filled blobs, grid and box lines, Fashion-MNIST pictures). One whole
family, ``script`` (cursive words and signatures), is never trained on: it measures whether rejection
generalises to a kind of non-digit the model never saw.

Shapes that *are* digit-like on purpose are left out: O/o/Q/C/c/D/U/u/n and closed outlines (a 0, open or
closed), I/l/|/( ) / \\ and J (a 1 or a 7), S/s (a 5), Z/z (a 2), B (an 8), b/G (a 6), g/q (a 9), { } (a 3),
a plain ellipse or a single vertical stroke.
Measured both ways (seed network, 60 epochs, seed 0): with C/D/U/u/n among the negatives, int8 MNIST accuracy
fell from 99.30 % to 99.17 % (zeros answered "not a digit") and non-digit pages did not improve (18.3 % vs
18.0 % reporting a digit, benchmarks/nondigit_pages.py --n 300), so they stay out. Again with ``seed-bn`` (30
epochs) and C/U/c/u/n without D: letter, symbol and doodle pages reporting a digit fell from 10 to 7 of 180,
but test digits read fell from 99.51 % to 99.35 % (README, "Measured figures")."""

from __future__ import annotations

import functools
import glob
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from digitkit.runtime.preprocess import mnist_normalise

NOT_A_DIGIT = 10  # the class index of "not a digit"; the digits keep 0-9
HELD_OUT = "script"  # never trained on: the held-out family

# Letters that are not digit look-alikes (see the module docstring).
LETTERS = "AEFHKLMNPRTVWXYaefhijkmprtvwxy"  # i and j with their dots: a 1 has none
SYMBOLS = "&@%#?!+=*$<>~^-"
HERSHEY_PRINT = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX,
                 cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_COMPLEX_SMALL)
HERSHEY_SCRIPT = (cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_SCRIPT_COMPLEX)
FASHION_DIRS = ("/usr/share/datasets/fashion-mnist",)  # Debian's dataset-fashion-mnist
CANVAS = 96


@dataclass(frozen=True)
class NegativesConfig:
    """How many non-digit tiles a run makes: ``ratio`` per training digit in all (0.3: about 16 000 for MNIST's
    54 000-image training split), shared between the families by ``weights``; and the seed that makes them."""

    weights: dict[str, int] = field(default_factory=lambda: {
        "letters": 30, "symbols": 15, "doodles": 20, "scribbles": 8, "partial": 8,
        "pairs": 30, "blobs": 5, "lines": 12, "fashion": 15})
    ratio: float = 0.25
    seed: int = 0

    def counts(self, digits: int) -> dict[str, int]:
        """Tiles per family for a training set of ``digits`` digit images (at least one of each)."""
        total = sum(self.weights.values())
        return {k: max(1, round(self.ratio * digits * w / total)) for k, w in self.weights.items()}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- drawing helpers (ink is 255 on a black canvas) ---

def _canvas() -> np.ndarray:
    return np.zeros((CANVAS, CANVAS), np.uint8)


def _thickness(rng: np.random.Generator, lo: int = 3, hi: int = 10) -> int:
    return int(rng.integers(lo, hi + 1))


def _finish(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random shear/rotation like handwriting, a slight blur like MNIST's anti-aliasing, then the MNIST tile."""
    angle = float(rng.uniform(-15, 15))
    shear = float(rng.uniform(-0.3, 0.3))
    m = cv2.getRotationMatrix2D((CANVAS / 2, CANVAS / 2), angle, 1.0)
    m[0, 1] += shear
    img = cv2.warpAffine(img, m, (CANVAS, CANVAS), flags=cv2.INTER_LINEAR, borderValue=0)
    img = cv2.GaussianBlur(img, (5, 5), float(rng.uniform(0.5, 1.5)))
    return mnist_normalise(img)


def _text(rng: np.random.Generator, text: str, fonts: tuple[int, ...]) -> np.ndarray:
    font = int(fonts[rng.integers(len(fonts))]) | (cv2.FONT_ITALIC if rng.random() < 0.3 else 0)
    thick = _thickness(rng, 1, 4)
    (w, h), base = cv2.getTextSize(text, font, 1.0, thick)
    scale = min((CANVAS - 8) / max(w, 1), (CANVAS - 8) / max(h + base, 1))
    thick = max(1, round(thick * scale / 2))
    (w, h), base = cv2.getTextSize(text, font, scale, thick)
    img = _canvas()
    cv2.putText(img, text, ((CANVAS - w) // 2, (CANVAS + h) // 2), font, scale, 255, thick, cv2.LINE_AA)
    return img


_TTF_CACHE: dict[str, Any] = {}


@functools.cache  # asked once per letter or symbol tile: list the folder once
def _ttf_fonts() -> list[str]:
    """DejaVu fonts from Debian's fonts-dejavu-core, where installed (Hershey fonts are always there)."""
    return sorted(glob.glob("/usr/share/fonts/truetype/dejavu/*.ttf"))


def _ttf_text(rng: np.random.Generator, text: str, fonts: list[str]) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    path = fonts[int(rng.integers(len(fonts)))]
    if path not in _TTF_CACHE:
        _TTF_CACHE[path] = ImageFont.truetype(path, 64)
    img = Image.new("L", (CANVAS * 3, CANVAS), 0)
    ImageDraw.Draw(img).text((8, 8), text, fill=255, font=_TTF_CACHE[path])
    arr = np.asarray(img)
    ys, xs = np.nonzero(arr)
    if len(xs) == 0:
        return _canvas()
    crop = arr[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    f = (CANVAS - 8) / max(crop.shape)
    crop = cv2.resize(crop, (max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f))))
    out = _canvas()
    y0, x0 = (CANVAS - crop.shape[0]) // 2, (CANVAS - crop.shape[1]) // 2
    out[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
    return out


def _word(rng: np.random.Generator, alphabet: str, lo: int, hi: int) -> str:
    return "".join(alphabet[i] for i in rng.integers(len(alphabet), size=int(rng.integers(lo, hi + 1))))


def letters(rng: np.random.Generator, _: Any) -> np.ndarray:
    """A letter or a short word (Hershey or DejaVu, upper/lower case, sometimes italic)."""
    text = _word(rng, LETTERS, 1, 1) if rng.random() < 0.6 else _word(rng, LETTERS + "oOsSlzgqcun", 2, 5)
    ttf = _ttf_fonts()
    img = _ttf_text(rng, text, ttf) if ttf and rng.random() < 0.35 else _text(rng, text, HERSHEY_PRINT)
    return _finish(img, rng)


def symbols(rng: np.random.Generator, _: Any) -> np.ndarray:
    """Symbols and operators: & @ % # ? ! + = * $ < > ~ ^ { } -, alone or two together."""
    text = _word(rng, SYMBOLS, 1, 1 if rng.random() < 0.8 else 2)
    ttf = _ttf_fonts()
    img = _ttf_text(rng, text, ttf) if ttf and rng.random() < 0.35 else _text(rng, text, HERSHEY_PRINT)
    return _finish(img, rng)


def script(rng: np.random.Generator, _: Any) -> np.ndarray:
    """The held-out family: cursive words, and signature-like words with a flourish under them."""
    img = _text(rng, _word(rng, LETTERS + "oslzgqbe", 3, 8), HERSHEY_SCRIPT)
    if rng.random() < 0.5:  # a signature's underline or loop
        pts = np.array([[rng.integers(5, 30), rng.integers(70, 90)], [rng.integers(40, 60), rng.integers(75, 95)],
                        [rng.integers(70, 92), rng.integers(60, 85)]], np.int32)
        cv2.polylines(img, [pts], False, 255, _thickness(rng, 2, 5), cv2.LINE_AA)
    return _finish(img, rng)


def _star(rng: np.random.Generator, img: np.ndarray, t: int) -> None:
    n = int(rng.choice([5, 5, 6, 8]))
    r1, r2 = rng.uniform(30, 44), rng.uniform(10, 20)
    pts = [(48 + (r1 if i % 2 == 0 else r2) * math.cos(math.pi * i / n - math.pi / 2),
            48 + (r1 if i % 2 == 0 else r2) * math.sin(math.pi * i / n - math.pi / 2)) for i in range(2 * n)]
    cv2.polylines(img, [np.array(pts, np.int32)], True, 255, t, cv2.LINE_AA)


def _heart(rng: np.random.Generator, img: np.ndarray, t: int) -> None:
    s = np.linspace(0, 2 * np.pi, 60)
    x = 16 * np.sin(s) ** 3
    y = -(13 * np.cos(s) - 5 * np.cos(2 * s) - 2 * np.cos(3 * s) - np.cos(4 * s))
    k = rng.uniform(2.0, 2.6)
    cv2.polylines(img, [np.stack([48 + k * x, 46 + k * y], 1).astype(np.int32)], True, 255, t, cv2.LINE_AA)


def _smiley(rng: np.random.Generator, img: np.ndarray, t: int) -> None:
    cv2.circle(img, (48, 48), int(rng.integers(32, 44)), 255, t, cv2.LINE_AA)
    for ex in (34, 62):  # eyes big enough to survive the scaling to 20 px
        cv2.circle(img, (ex, 36), 6, 255, -1, cv2.LINE_AA)
    cv2.ellipse(img, (48, 54), (18, int(rng.integers(6, 14))), 0, 20, 160, 255, t, cv2.LINE_AA)


def _arrow(rng: np.random.Generator, img: np.ndarray, t: int) -> None:
    a = rng.uniform(0, 2 * np.pi)
    p1 = (int(48 - 38 * math.cos(a)), int(48 - 38 * math.sin(a)))
    p2 = (int(48 + 38 * math.cos(a)), int(48 + 38 * math.sin(a)))
    cv2.arrowedLine(img, p1, p2, 255, t, cv2.LINE_AA, tipLength=float(rng.uniform(0.25, 0.45)))


def _tick(rng: np.random.Generator, img: np.ndarray, t: int) -> None:
    pts = np.array([[15, int(rng.integers(45, 60))], [int(rng.integers(32, 45)), 80], [85, 12]], np.int32)
    cv2.polylines(img, [pts], False, 255, t, cv2.LINE_AA)
    if rng.random() < 0.3:  # a cross instead
        img[:] = 0
        cv2.line(img, (15, 15), (81, 81), 255, t, cv2.LINE_AA)
        cv2.line(img, (81, 15), (15, 81), 255, t, cv2.LINE_AA)


def _spiral(rng: np.random.Generator, img: np.ndarray, t: int) -> None:
    turns = rng.uniform(2.0, 3.5)
    s = np.linspace(0, 2 * np.pi * turns, 120)
    r = 4 + 38 * s / s[-1]
    pts = np.stack([48 + r * np.cos(s), 48 + r * np.sin(s)], 1).astype(np.int32)
    cv2.polylines(img, [pts], False, 255, t, cv2.LINE_AA)


def _shape(rng: np.random.Generator, img: np.ndarray, t: int) -> None:
    """Outlined triangles and houses (no squares, circles or flowers: a closed round or boxy outline is how
    many people write 0)."""
    if rng.random() < 0.5:
        cv2.polylines(img, [np.array([(48, 10), (10, 84), (86, 84)], np.int32)], True, 255, t, cv2.LINE_AA)
    else:
        pts = [(14, 44), (48, 10), (82, 44), (82, 86), (14, 86), (14, 44), (82, 44)]
        cv2.polylines(img, [np.array(pts, np.int32)], False, 255, t, cv2.LINE_AA)


_DOODLES: tuple[Callable[[np.random.Generator, np.ndarray, int], None], ...] = (
    _star, _heart, _smiley, _arrow, _tick, _spiral, _shape)


def doodles(rng: np.random.Generator, _: Any) -> np.ndarray:
    """Hearts, stars, smileys, arrows, ticks and crosses, spirals, outlined shapes."""
    img = _canvas()
    _DOODLES[int(rng.integers(len(_DOODLES)))](rng, img, _thickness(rng, 3, 9))
    return _finish(img, rng)


def scribbles(rng: np.random.Generator, _: Any) -> np.ndarray:
    """A long random pen path through many points (smoothed), or a zigzag: hard to mistake for one digit."""
    img = _canvas()
    n = int(rng.integers(7, 14))
    pts = rng.uniform(8, 88, size=(n, 2))
    if rng.random() < 0.3:  # zigzag
        pts[:, 0] = np.linspace(8, 88, n)
        pts[:, 1] = np.where(np.arange(n) % 2 == 0, rng.uniform(8, 30), rng.uniform(66, 88))
    else:  # Chaikin smoothing of a random polyline
        for _ in range(3):
            q = 0.75 * pts[:-1] + 0.25 * pts[1:]
            r = 0.25 * pts[:-1] + 0.75 * pts[1:]
            pts = np.stack([q, r], 1).reshape(-1, 2)
    cv2.polylines(img, [pts.astype(np.int32)], False, 255, _thickness(rng, 3, 9), cv2.LINE_AA)
    return _finish(img, rng)


def blobs(rng: np.random.Generator, _: Any) -> np.ndarray:
    """Filled ellipses, polygons and ink smudges."""
    img = _canvas()
    if rng.random() < 0.5:
        cv2.ellipse(img, (48, 48), (int(rng.integers(15, 44)), int(rng.integers(15, 44))),
                    float(rng.uniform(0, 180)), 0, 360, 255, -1, cv2.LINE_AA)
    else:
        pts = rng.uniform(8, 88, size=(int(rng.integers(4, 9)), 2)).astype(np.int32)
        cv2.fillPoly(img, [cv2.convexHull(pts)], 255, cv2.LINE_AA)
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (15, 15), 4)
    return _finish(img, rng)


def lines(rng: np.random.Generator, _: Any) -> np.ndarray:
    """What grid paper, ruled lines and box borders leave: crosses, corners, T-junctions, grids, ruled pairs, dashes."""
    img = _canvas()
    t = _thickness(rng, 2, 8)
    kind = int(rng.integers(6))
    c = int(rng.integers(30, 66))
    if kind == 0:  # plus / cross of grid lines
        cv2.line(img, (4, c), (92, c), 255, t)
        cv2.line(img, (c, 4), (c, 92), 255, t)
    elif kind == 1:  # a corner
        cv2.line(img, (c, c), (92, c), 255, t)
        cv2.line(img, (c, c), (c, 92), 255, t)
    elif kind == 2:  # a T
        cv2.line(img, (4, c), (92, c), 255, t)
        cv2.line(img, (c, c), (c, 92), 255, t)
    elif kind == 3:  # a grid
        step = int(rng.integers(18, 34))
        for v in range(4, 93, step):
            cv2.line(img, (4, v), (92, v), 255, t)
            cv2.line(img, (v, 4), (v, 92), 255, t)
    elif kind == 4:  # two ruled lines (not a frame: a box outline is a 0 to many writers)
        cv2.line(img, (4, 30), (92, 30), 255, t)
        cv2.line(img, (4, 66), (92, 66), 255, t)
    else:  # a dash, minus or underline
        cv2.line(img, (8, c), (88, c + int(rng.integers(-6, 7))), 255, t)
    return _finish(img, rng)


def partial(rng: np.random.Generator, digits: np.ndarray) -> np.ndarray:
    """A 25-40 % band cut from one side of a training digit: the fragment a bad cut leaves. A fragment that is
    a thin upright stroke is drawn again (it would be a fair ``1``, and must not teach the model that 1s are
    not digits)."""
    for _ in range(20):
        d = digits[int(rng.integers(len(digits)))]
        ys, xs = np.nonzero(d > 30)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        keep = rng.uniform(0.25, 0.4)
        side = int(rng.integers(4))
        crop = d.copy()
        if side == 0:
            crop[y0 + int((y1 - y0) * keep):] = 0
        elif side == 1:
            crop[:y1 - int((y1 - y0) * keep)] = 0
        elif side == 2:
            crop[:, x0 + int((x1 - x0) * keep):] = 0
        else:
            crop[:, :x1 - int((x1 - x0) * keep)] = 0
        ys, xs = np.nonzero(crop > 30)
        if len(xs) and (np.ptp(xs) + 1) >= 0.5 * (np.ptp(ys) + 1):
            return mnist_normalise(crop)
    return mnist_normalise(crop)


def _columns(d: np.ndarray) -> tuple[int, int]:
    xs = np.nonzero((d > 30).any(axis=0))[0]
    return int(xs.min()), int(xs.max()) + 1


def pairs(rng: np.random.Generator, digits: np.ndarray) -> np.ndarray:
    """Two training digits side by side (touching, overlapping or a little apart) in one tile: what a missed
    split produces, and the tile that segmentation-by-recognition must refuse."""
    a = digits[int(rng.integers(len(digits)))]
    b = digits[int(rng.integers(len(digits)))]
    (a0, a1), (b0, b1) = _columns(a), _columns(b)
    # Negative gaps overlap the two, never by more than half the narrower digit (which would hide it).
    gap = int(rng.integers(-min(4, min(a1 - a0, b1 - b0) // 3), 4))
    dy = int(rng.integers(-3, 4))
    canvas = np.zeros((36, 80), np.uint8)
    canvas[4:32, 10:38] = a
    xb = 10 + a1 + gap - b0  # b's ink starts ``gap`` pixels after a's ends
    canvas[4 + dy:32 + dy, xb:xb + 28] = np.maximum(canvas[4 + dy:32 + dy, xb:xb + 28], b)
    return mnist_normalise(canvas)


def fashion(rng: np.random.Generator, extra: Any) -> np.ndarray:
    """A Fashion-MNIST training picture (clothing: pictures, not pen strokes), renormalised like a candidate."""
    img = extra[int(rng.integers(len(extra)))]
    return mnist_normalise(img)


FAMILIES: dict[str, Callable[[np.random.Generator, Any], np.ndarray]] = {
    "letters": letters, "symbols": symbols, "doodles": doodles, "scribbles": scribbles, "partial": partial,
    "pairs": pairs, "blobs": blobs, "lines": lines, "fashion": fashion, "script": script}
_NEEDS_DIGITS = frozenset({"partial", "pairs"})


def load_fashion() -> np.ndarray | None:
    """Fashion-MNIST training images from Debian's dataset-fashion-mnist, or None when it is not installed."""
    from digitkit.toolkit.data import read_idx

    for folder in FASHION_DIRS:
        path = Path(folder) / "train-images-idx3-ubyte.gz"
        if path.is_file():
            return read_idx(path, 3)
    return None


@dataclass(frozen=True)
class Negatives:
    """Generated non-digit tiles: ``x`` (N, 28, 28) uint8, white on black, and the family of each."""

    x: np.ndarray
    family: np.ndarray  # (N,) family names
    fashion_available: bool


def generate(digits: np.ndarray, config: NegativesConfig | None = None, *,
             families: dict[str, int] | None = None, seed: int | None = None) -> Negatives:
    """Generate the configured number of tiles per family.

    Args:
        digits: digit images of the split the tiles are for (``partial`` and ``pairs`` are cut from them; never
            test images); their number sets how many tiles are made (:meth:`NegativesConfig.counts`).
        config: the share per family and the seed; ``families`` (exact counts) and ``seed`` override them.

    Returns:
        :class:`Negatives`. Fashion-MNIST is skipped (and ``fashion_available`` is False) when the Debian
        package is not installed.
    """
    config = config or NegativesConfig()
    counts = families if families is not None else config.counts(len(digits))
    rng = np.random.default_rng(config.seed if seed is None else seed)
    fashion_x = load_fashion() if counts.get("fashion") else None
    tiles: list[np.ndarray] = []
    names: list[str] = []
    for name, n in counts.items():
        if name not in FAMILIES:
            raise ValueError(f"unknown non-digit family {name!r}; choose from {', '.join(FAMILIES)}")
        if (name == "fashion" and fashion_x is None) or (name in _NEEDS_DIGITS and len(digits) == 0):
            continue
        extra = digits if name in _NEEDS_DIGITS else fashion_x
        fam_rng = np.random.default_rng(rng.integers(2**63))
        for _ in range(n):
            tiles.append(FAMILIES[name](fam_rng, extra))
            names.append(name)
    x = np.stack(tiles) if tiles else np.zeros((0, 28, 28), np.uint8)
    return Negatives(x=x, family=np.array(names), fashion_available=fashion_x is not None)

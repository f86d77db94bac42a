"""Lines of 2-5 handwritten digits that touch or overlap their neighbours (the commonest way people write
numbers), photographed: and how well ``digitkit classify`` reads them.

Each digit is an MNIST image scaled to a line height (with +-15 % per-digit height jitter and a small
vertical wobble); each next digit is slid left until its ink *touches* the previous digits' ink, then
pushed further by 0-15 % of the height (overlap). The line is drawn as dark ink on paper under uneven light
and goes through blur, noise and JPEG (benchmarks/photos.py).

    python benchmarks/lines.py [--split test|train] [--n 500] [--model FILE] [--show-errors 20] [--tilt 30]

``--tilt 30`` turns each line by a random angle of up to 30 degrees either way (the photo's slope).

``--split train`` (MNIST training images, seed 0) is the only one to tune on and what the tests use;
the measured figure is ``--split test`` (the 10 000 MNIST test images, seed 1).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from photos import camera, emit, ink_on, paper, read_all  # noqa: E402


def _crop(tile: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(tile > 30)
    return tile[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32) / 255.0


def touching_line(tiles: list[np.ndarray], rng: np.random.Generator, height: float | None = None,
                  max_overlap: float = 0.15) -> np.ndarray:
    """The float (H, W) ink mask (0-1) of the tiles written in a row, each touching (or overlapping) the last."""
    height = height or float(rng.uniform(36, 110))
    glyphs = []
    for t in tiles:
        c = _crop(t)
        s = height * rng.uniform(0.85, 1.15) / 20
        glyphs.append(np.clip(cv2.resize(c, (max(1, round(c.shape[1] * s)), max(1, round(c.shape[0] * s))),
                                         interpolation=cv2.INTER_CUBIC), 0, 1))
    H = int(max(g.shape[0] for g in glyphs) + 0.2 * height)
    W = int(sum(g.shape[1] for g in glyphs) + 2)
    canvas = np.zeros((H, W), np.float32)
    right = np.full(H, -1, np.int64)  # rightmost ink column per row so far
    for g in glyphs:
        gh, gw = g.shape
        y = int((H - gh) / 2 + rng.uniform(-0.06, 0.06) * height)
        y = min(max(y, 0), H - gh)
        ink = g > 0.3
        if right.max() < 0:
            x = 0
        else:
            rows = np.nonzero(ink.any(1))[0]
            left = np.array([np.argmax(ink[r]) for r in rows])
            # The x where this glyph's ink first meets the line's ink, row by row, then pushed into it.
            touch = int(np.max(right[rows + y] - left)) + 1
            touch = max(touch, int(np.max(right)) - gw + 2)  # never wholly inside the previous ink
            x = max(0, touch - int(rng.uniform(0, max_overlap) * height))
        canvas[y:y + gh, x:x + gw] = np.maximum(canvas[y:y + gh, x:x + gw], g)
        cols = np.where(ink.any(1), gw - 1 - np.argmax(ink[:, ::-1], 1), -1)
        right[y:y + gh] = np.maximum(right[y:y + gh], np.where(cols >= 0, x + cols, -1))
    xs = np.nonzero(canvas.max(0) > 0)[0]
    return canvas[:, : xs.max() + 1]


def line_photo(tiles: list[np.ndarray], rng: np.random.Generator, max_overlap: float = 0.15,
               max_tilt: float = 0.0) -> np.ndarray:
    """A photo (uint8 BGR) of a touching line on paper under uneven light, with margins, blur, noise, JPEG;
    with ``max_tilt``, the line written at a slope of up to that many degrees either way."""
    mask = touching_line(tiles, rng, max_overlap=max_overlap)
    if max_tilt:  # deskew's own turn, the other way: a level line comes out at the drawn slope
        from digitkit.runtime.deskew import rotate

        mask = rotate(mask, -float(rng.uniform(-max_tilt, max_tilt)))[0]
    h, w = mask.shape
    mx, my = int(rng.uniform(0.3, 1.0) * h), int(rng.uniform(0.3, 1.0) * h)
    size = (w + 2 * mx, h + 2 * my)
    sheet = paper(rng, size)
    ink_on(sheet, mask, mx, my, rng, rng.uniform(0.6, 0.9))
    return camera(sheet, rng)


def mnist_split(data_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    from digitkit.toolkit.data import load_mnist

    d = load_mnist(data_dir)
    return (d.x_train, d.y_train) if split == "train" else (d.x_test, d.y_test)


def line_set(x: np.ndarray, y: np.ndarray, n: int, seed: int, max_overlap: float = 0.15, max_tilt: float = 0.0):
    """``n`` (photo, truth) pairs of touching lines of 2-5 digits."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        idx = rng.integers(0, len(x), int(rng.integers(2, 6)))
        yield line_photo([x[j] for j in idx], rng, max_overlap, max_tilt), "".join(str(int(y[j])) for j in idx)


def measure(model: str | None, data_dir: str, split: str, n: int, show_errors: int = 0,
            max_overlap: float = 0.15, cut_only: bool = False, max_tilt: float = 0.0) -> dict[str, object]:
    from digitkit.runtime.classifier import DigitClassifier

    x, y = mnist_split(data_dir, split)
    clf = DigitClassifier(model_path=model, threads=1, read_whole=not cut_only)
    t = read_all(clf, line_set(x, y, n, 0 if split == "train" else 1, max_overlap, max_tilt), show_errors,
                 "/tmp/digitkit_line_errors", "line", ".png")
    return {"split": split, "lines": n, "max_overlap": max_overlap, "max_tilt": max_tilt, "exact": t.exact / n,
            "digit_accuracy": 1 - t.dist / t.total,
            "seconds_per_line": t.seconds / n, "model": model or "shipped", "cut_only": cut_only}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=["train", "test"], default="test")
    ap.add_argument("--model", default=None)
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared/data/mnist"))
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--show-errors", type=int, default=0)
    ap.add_argument("--max-overlap", type=float, default=0.15,
                    help="how far past touching a digit is pushed into the last, as a fraction of the height")
    ap.add_argument("--tilt", type=float, default=0.0, help="write each line at a slope of up to this many degrees")
    ap.add_argument("--cut-only", action="store_true", help="without the sequence model (classify --cut-only)")
    ap.add_argument("--out")
    a = ap.parse_args()
    emit(measure(a.model, a.data_dir, a.split, a.n, a.show_errors, a.max_overlap, a.cut_only, a.tilt), a.out)


if __name__ == "__main__":
    main()

"""Pages of pen marks that are not digits, photographed, and how many of them ``digitkit classify`` reads a
digit on (it should read none).

Each page is a 640x480 camera-like photo (paper under uneven light, blur, noise, JPEG: benchmarks/photos.py)
with 1-6 marks of one family written at page scale: single letters, words, symbols and operators, doodles
(hearts, stars, smileys, arrows, ticks, crosses, spirals, clouds), or cursive words and signatures. The marks
are drawn here, at page size, by code separate from the training generator (toolkit/negatives.py), with other
fonts sizes, pen widths and placement. ``script`` is the family no shipped model was trained on (held out).

    python benchmarks/nondigit_pages.py [--model FILE|fast|accurate] [--n 300] [--seed 11] [--out result.json]

Prints, per family and overall: pages that report any digit, and phantom digits in all.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from photos import SIZE, camera, ink_on, paper  # noqa: E402  (benchmarks/ is not a package)

FAMILIES = ("letters", "words", "symbols", "doodles", "script")
HELD_OUT = "script"
LETTERS = "ACEFHKMNPRTUVWXYacefhkmnprtuvwxy"
WORDS = ("hello", "milk", "eggs", "Anna", "the", "cat", "Mark", "today", "yes", "no", "what", "Paris", "TODO",
         "name", "Hi", "note", "cafe", "bread", "mum", "keys", "OK", "Max", "tea", "cheers", "thanks", "Kate")
SYMBOLS = "&@%#?!+=*$<>~^"


def _text_mask(text: str, height: int, rng: np.random.Generator, script: bool = False) -> np.ndarray:
    """Text as a float ink mask about ``height`` px tall (Hershey fonts at page scale, sometimes italic)."""
    fonts = ((cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_SCRIPT_COMPLEX) if script else
             (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX))
    font = int(fonts[int(rng.integers(len(fonts)))]) | (cv2.FONT_ITALIC if rng.random() < 0.3 else 0)
    scale = height / 30
    th = max(2, int(round(height * rng.uniform(0.06, 0.14))))
    (w, h), base = cv2.getTextSize(text, font, scale, th)
    m = np.zeros((h + base + 2 * th + 4, w + 2 * th + 4), np.uint8)
    cv2.putText(m, text, (th + 2, h + th + 2), font, scale, 255, th, cv2.LINE_AA)
    if script and rng.random() < 0.5:  # a signature's flourish
        y = m.shape[0] - th - 2
        cv2.line(m, (th, y), (m.shape[1] - th, y - int(rng.integers(0, max(1, h // 2)))), 255, max(1, th // 2),
                 cv2.LINE_AA)
    return m.astype(np.float32) / 255.0


def _doodle_mask(side: int, rng: np.random.Generator) -> np.ndarray:
    m = np.zeros((side, side), np.uint8)
    c, r = side // 2, int(side * 0.42)
    th = max(2, int(side * rng.uniform(0.04, 0.09)))
    kind = int(rng.integers(8))
    if kind == 0:  # heart
        s = np.linspace(0, 2 * np.pi, 80)
        pts = np.stack([16 * np.sin(s) ** 3, -(13 * np.cos(s) - 5 * np.cos(2 * s) - 2 * np.cos(3 * s) - np.cos(4 * s))],
                       1) * (r / 17) + c
        cv2.polylines(m, [pts.astype(np.int32)], True, 255, th, cv2.LINE_AA)
    elif kind == 1:  # five-pointed star, outlined
        a = np.linspace(0, 2 * np.pi, 11)[:-1] - np.pi / 2
        rad = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        cv2.polylines(m, [np.stack([c + rad * np.cos(a), c + rad * np.sin(a)], 1).astype(np.int32)], True, 255, th,
                      cv2.LINE_AA)
    elif kind == 2:  # smiley
        cv2.circle(m, (c, c), r, 255, th, cv2.LINE_AA)
        for dx in (-r // 3, r // 3):
            cv2.circle(m, (c + dx, c - r // 4), max(2, th), 255, -1, cv2.LINE_AA)
        cv2.ellipse(m, (c, c + r // 8), (r // 2, r // 3), 0, 15, 165, 255, th, cv2.LINE_AA)
    elif kind == 3:  # arrow
        a = rng.uniform(0, 2 * np.pi)
        p, q = (c - r * math.cos(a), c - r * math.sin(a)), (c + r * math.cos(a), c + r * math.sin(a))
        cv2.arrowedLine(m, tuple(int(v) for v in p), tuple(int(v) for v in q), 255, th, cv2.LINE_AA, tipLength=0.35)
    elif kind == 4:  # tick
        pts = np.array([[c - r, c], [c - r // 4, c + r], [c + r, c - r]], np.int32)
        cv2.polylines(m, [pts], False, 255, th, cv2.LINE_AA)
    elif kind == 5:  # cross
        cv2.line(m, (c - r, c - r), (c + r, c + r), 255, th, cv2.LINE_AA)
        cv2.line(m, (c + r, c - r), (c - r, c + r), 255, th, cv2.LINE_AA)
    elif kind == 6:  # spiral
        s = np.linspace(0, 2 * np.pi * rng.uniform(2, 3.5), 150)
        rad = r * s / s[-1]
        cv2.polylines(m, [np.stack([c + rad * np.cos(s), c + rad * np.sin(s)], 1).astype(np.int32)], False, 255, th,
                      cv2.LINE_AA)
    else:  # cloud
        for a in np.linspace(0, 2 * np.pi, 7, endpoint=False):
            cv2.ellipse(m, (int(c + r * 0.6 * math.cos(a)), int(c + r * 0.45 * math.sin(a))), (r // 3, r // 4), 0,
                        0, 360, 255, th, cv2.LINE_AA)
    return m.astype(np.float32) / 255.0


def mark(family: str, rng: np.random.Generator) -> np.ndarray:
    """One mark of ``family`` as a float ink mask."""
    height = int(rng.uniform(45, 120))
    if family == "letters":
        return _text_mask(LETTERS[int(rng.integers(len(LETTERS)))], height, rng)
    if family == "words":
        return _text_mask(WORDS[int(rng.integers(len(WORDS)))], int(height * 0.7), rng)
    if family == "symbols":
        return _text_mask(SYMBOLS[int(rng.integers(len(SYMBOLS)))], height, rng)
    if family == "script":
        return _text_mask(WORDS[int(rng.integers(len(WORDS)))], int(height * 0.8), rng, script=True)
    return _doodle_mask(int(height * 1.2), rng)


def make_page(family: str, rng: np.random.Generator) -> np.ndarray:
    """A camera-like photo with 1-6 marks of one family, placed in rows without overlap."""
    w, h = SIZE
    sheet = paper(rng, SIZE)
    x, y, row_h = 25, 25, 0
    for _ in range(int(rng.integers(1, 7))):
        m = mark(family, rng)
        mh, mw = m.shape
        if mw > w - 50:
            f = (w - 50) / mw
            m = cv2.resize(m, (w - 50, max(1, int(mh * f))))
            mh, mw = m.shape
        if x + mw > w - 25:
            x, y, row_h = 25, y + row_h + int(rng.uniform(15, 40)), 0
        if y + mh > h - 25:
            break
        ink_on(sheet, m, x, y, rng, rng.uniform(0.6, 0.95))
        x += mw + int(rng.uniform(20, 60))
        row_h = max(row_h, mh)
    return camera(sheet, rng)


def run(model: str | None, n: int, seed: int, save: str | None = None, cut_only: bool = False) -> dict[str, object]:
    from digitkit.runtime.classifier import DigitClassifier

    clf = DigitClassifier(model_path=model, threads=1, read_whole=not cut_only)
    rng = np.random.default_rng(seed)
    per: dict[str, dict[str, int]] = {f: {"pages": 0, "pages_with_digits": 0, "phantom_digits": 0} for f in FAMILIES}
    for i in range(n):
        family = FAMILIES[i % len(FAMILIES)]
        page = make_page(family, rng)
        text = clf.classify(page).text
        if save and text:
            Path(save).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(Path(save) / f"{i:04d}_{family}_{text}.jpg"), page)
        per[family]["pages"] += 1
        per[family]["pages_with_digits"] += bool(text)
        per[family]["phantom_digits"] += len(text)
    seen = [f for f in FAMILIES if f != HELD_OUT]
    return {
        "model": model or "shipped default", "seed": seed, "pages": n, "held_out_family": HELD_OUT,
        "by_family": per,
        "pages_with_digits_rate": sum(p["pages_with_digits"] for p in per.values()) / max(n, 1),
        "trained_families_rate": (sum(per[f]["pages_with_digits"] for f in seen)
                                  / max(sum(per[f]["pages"] for f in seen), 1)),
        "held_out_rate": per[HELD_OUT]["pages_with_digits"] / max(per[HELD_OUT]["pages"], 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a .tflite (default: the shipped default model)")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", help="write the result as JSON here")
    ap.add_argument("--save", help="write every page that reported a digit into this folder, to look at")
    ap.add_argument("--cut-only", action="store_true", help="without the sequence model (classify --cut-only)")
    a = ap.parse_args()
    res = run(a.model, a.n, a.seed, a.save, a.cut_only)
    for fam, p in res["by_family"].items():  # type: ignore[union-attr]
        tag = " (held out)" if fam == HELD_OUT else ""
        print(f"{fam:8s}{tag:11s} pages with a digit {p['pages_with_digits']:3d}/{p['pages']:3d}   "
              f"phantom digits {p['phantom_digits']}")
    print(f"all: {res['pages_with_digits_rate']:.1%} of {res['pages']} pages report a digit "
          f"(trained families {res['trained_families_rate']:.1%}, held out {res['held_out_rate']:.1%})")
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

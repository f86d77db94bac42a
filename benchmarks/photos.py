"""Camera-like photos of handwritten numbers, generated, and how well ``digitkit classify`` reads them.

Each photo is 640x480: paper with a lighting gradient and vignette, 1-4 MNIST *test* digits drawn as dark
ink in a row, blur, sensor noise, JPEG. Some pages are blank. A second set holds non-digit shapes (blobs,
stars, scribbles, letters...) to measure what ``--min-confidence`` rejects.

    python benchmarks/photos.py quality   --model runs/seed/int8.tflite [--n 400] [--dev]
    python benchmarks/photos.py quality   --crop-height 24   (tight crops: the number 24 px tall)
    python benchmarks/photos.py rejection --model runs/seed/int8.tflite [--n 400]

The development slice (``--dev``: test digits 0-999, seed 0) is the only one looked at while tuning;
the measured set uses test digits 1000-9999 and another seed. The tests import the generators from here.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
SIZE = (640, 480)  # width, height


def paper(rng: np.random.Generator, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A float32 (H, W, 3) BGR sheet of paper 0-255 under uneven light: gradient, vignette, a tint."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(150, 235)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * (xx / w - 0.5) + np.sin(angle) * (yy / h - 0.5))
    light = 1.0 + rng.uniform(0.2, 0.6) * ramp
    cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
    light *= 1.0 - rng.uniform(0.05, 0.3) * (((xx - cx) / w) ** 2 + ((yy - cy) / h) ** 2) * 2
    tint = np.array([rng.uniform(0.9, 1.0), rng.uniform(0.95, 1.0), 1.0], np.float32)
    return np.clip(base * light[..., None] * tint, 0, 255)


def camera(sheet: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur, noise and JPEG round trip: what the camera does to the sheet. Returns uint8 BGR."""
    img = cv2.GaussianBlur(sheet, (0, 0), rng.uniform(0.6, 2.0))
    img = img + rng.normal(0, rng.uniform(2, 8), img.shape).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 91))])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def ink_on(sheet: np.ndarray, alpha: np.ndarray, x: int, y: int, rng: np.random.Generator,
           darkness: float) -> None:
    """Draw an ink mask (float 0-1, (h, w)) onto the sheet at (x, y), in place: dark blue-black ink."""
    h, w = alpha.shape
    color = np.array([rng.uniform(0.0, 0.35), rng.uniform(0.0, 0.15), rng.uniform(0.0, 0.15)], np.float32)
    region = sheet[y:y + h, x:x + w]
    a = (alpha * darkness)[..., None]
    region[:] = region * (1 - a) + region * color * a


def make_photo(tiles: list[np.ndarray], rng: np.random.Generator, size: tuple[int, int] = SIZE,
               angle: float = 0.0) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A photo of the MNIST tiles (white-on-black 28x28) written in a row; [] gives a blank page. With
    ``angle`` (degrees, counter-clockwise) the row is written at that slope, centred in the frame.

    Returns:
        The uint8 BGR photo and each digit's box (x, y, w, h) (before turning, when ``angle`` is set).
    """
    w, h = size
    sheet = paper(rng, size)
    page = sheet
    if angle:  # write on a white layer, turn it, then lay it on the paper (ink multiplies the paper)
        sheet = np.full_like(page, 255.0)
    boxes: list[tuple[int, int, int, int]] = []
    if tiles:
        crops = []
        for t in tiles:
            ys, xs = np.nonzero(t > 30)
            crops.append(t[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32) / 255.0)
        height = min(rng.uniform(70, 170), (h - 60) / 1.3)  # (a short strip gets smaller digits)
        gaps = [rng.uniform(0.2, 0.6) * height for _ in crops[1:]]
        widths = [c.shape[1] * height / 20 for c in crops]
        total = sum(widths) + sum(gaps)
        f = min(1.0, (w - 60) / total)  # shrink a long number so it fits with a margin
        if angle:  # and so that it still fits once turned
            t = np.deg2rad(abs(angle))
            f = min(f, (h - 60) / (total * np.sin(t) + 1.3 * height * np.cos(t)),
                    (w - 60) / (total * np.cos(t) + 1.3 * height * np.sin(t)))
        height, total = height * f, total * f
        x = rng.uniform(30, w - 30 - total)
        y0 = rng.uniform(30, h - 30 - 1.2 * height)
        darkness = rng.uniform(0.6, 0.9)
        for i, c in enumerate(crops):
            s = height / 20
            ch, cw = max(1, round(c.shape[0] * s)), max(1, round(c.shape[1] * s))
            alpha = np.clip(cv2.resize(c, (cw, ch), interpolation=cv2.INTER_CUBIC), 0, 1)
            yy = int(y0 + rng.uniform(-0.08, 0.08) * height + (20 - c.shape[0]) * s / 2)
            yy = min(max(yy, 5), h - ch - 5)
            xx = int(x)
            ink_on(sheet, alpha, xx, yy, rng, darkness)
            boxes.append((xx, yy, cw, ch))
            x += cw + (gaps[i] * f if i < len(gaps) else 0)
    if angle:
        if boxes:
            cx = (boxes[0][0] + boxes[-1][0] + boxes[-1][2]) / 2
            cy = float(np.mean([b[1] + b[3] / 2 for b in boxes]))
        else:
            cx, cy = w / 2, h / 2
        m = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
        m[0, 2] += w / 2 - cx
        m[1, 2] += h / 2 - cy
        layer = cv2.warpAffine(sheet, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=(255, 255, 255))
        sheet = page * (layer / 255.0)
    return camera(sheet, rng), boxes


SHAPES = ("disk", "square", "triangle", "star", "scribble", "hash", "cross", "letter", "blob", "smiley")


def shape_mask(kind: str, rng: np.random.Generator, side: int) -> np.ndarray:
    """A float (side, side) ink mask of a non-digit shape (no rings, bars or loops that *are* digits)."""
    m = np.zeros((side, side), np.uint8)
    c, r = side // 2, int(side * 0.4)
    th = max(2, side // 12)
    if kind == "disk":
        cv2.circle(m, (c, c), r, 255, -1)
    elif kind == "square":
        cv2.rectangle(m, (c - r, c - r), (c + r, c + r), 255, -1)
    elif kind == "triangle":
        pts = np.array([[c, c - r], [c - r, c + r], [c + r, c + r]], np.int32)
        cv2.fillPoly(m, [pts], 255)
    elif kind == "star":
        a = np.linspace(0, 2 * np.pi, 11)[:-1] + rng.uniform(0, 1)
        rad = np.where(np.arange(10) % 2 == 0, r, r * 0.4)
        pts = np.stack([c + rad * np.cos(a), c + rad * np.sin(a)], 1).astype(np.int32)
        cv2.fillPoly(m, [pts], 255)
    elif kind == "scribble":
        pts = np.cumsum(rng.normal(0, side / 6, (12, 2)), 0)
        pts = (pts - pts.mean(0)) / (np.abs(pts - pts.mean(0)).max() + 1e-6) * r + c
        cv2.polylines(m, [pts.astype(np.int32)], False, 255, th, cv2.LINE_AA)
    elif kind == "hash":
        for d in (-r // 3, r // 3):
            cv2.line(m, (c + d, c - r), (c + d, c + r), 255, th)
            cv2.line(m, (c - r, c + d), (c + r, c + d), 255, th)
    elif kind == "cross":
        cv2.line(m, (c - r, c - r), (c + r, c + r), 255, th)
        cv2.line(m, (c - r, c + r), (c + r, c - r), 255, th)
    elif kind == "letter":
        ch = "ABCDEFHKMNRVWXY"[int(rng.integers(15))]
        (tw, tht), _ = cv2.getTextSize(ch, cv2.FONT_HERSHEY_SIMPLEX, side / 30, th)
        cv2.putText(m, ch, (c - tw // 2, c + tht // 2), cv2.FONT_HERSHEY_SIMPLEX, side / 30, 255, th, cv2.LINE_AA)
    elif kind == "blob":
        a = np.sort(rng.uniform(0, 2 * np.pi, 9))
        rad = rng.uniform(0.4, 1.0, 9) * r
        pts = np.stack([c + rad * np.cos(a), c + rad * np.sin(a)], 1).astype(np.int32)
        cv2.fillPoly(m, [pts], 255)
    elif kind == "smiley":
        cv2.circle(m, (c, c), r, 255, th)
        cv2.circle(m, (c - r // 3, c - r // 4), th, 255, -1)
        cv2.circle(m, (c + r // 3, c - r // 4), th, 255, -1)
        cv2.ellipse(m, (c, c + r // 6), (r // 2, r // 3), 0, 20, 160, 255, th)
    return m.astype(np.float32) / 255.0


def make_shapes_photo(rng: np.random.Generator, n: int = 1,
                      size: tuple[int, int] = SIZE) -> tuple[np.ndarray, list[str]]:
    """A photo with ``n`` non-digit shapes in a row; returns it and the shape names."""
    w, h = size
    sheet = paper(rng, size)
    side = int(rng.uniform(70, 150))
    kinds = [SHAPES[int(rng.integers(len(SHAPES)))] for _ in range(n)]
    x = int(rng.uniform(30, max(31, w - 30 - n * side * 1.3)))
    y = int(rng.uniform(30, h - 30 - side))
    for k in kinds:
        ink_on(sheet, shape_mask(k, rng, side), x, y, rng, rng.uniform(0.6, 0.9))
        x += int(side * 1.3)
    return camera(sheet, rng), kinds


def test_digits(data_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The MNIST test images and labels (the benchmark only ever draws from the test set)."""
    sys.path.insert(0, str(REPO))
    from digitkit.toolkit.data import load_mnist

    d = load_mnist(data_dir)
    return d.x_test, d.y_test


def photo_set(x: np.ndarray, y: np.ndarray, n: int, seed: int, blank_every: int = 10, max_tilt: float = 0.0,
              crop_height: int = 0):
    """``n`` (photo, true text) pairs; every ``blank_every``-th photo is a blank page (text ""). With
    ``max_tilt`` each number is written at a slope of up to that many degrees either way; with ``crop_height``
    each photo is cut tight around its number and scaled so the number is that many pixels tall
    (:func:`tight_crop`)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        k = 0 if i % blank_every == blank_every - 1 else int(rng.integers(1, 5))
        idx = rng.integers(0, len(x), k)
        angle = float(rng.uniform(-max_tilt, max_tilt)) if max_tilt else 0.0
        photo, boxes = make_photo([x[j] for j in idx], rng, angle=angle)
        if crop_height:
            photo = tight_crop(photo, boxes, crop_height)
        yield photo, "".join(str(int(y[j])) for j in idx)


def tight_crop(photo: np.ndarray, boxes: list[tuple[int, int, int, int]], height: int) -> np.ndarray:
    """A tight crop of a level photo: the digits' boxes and a quarter of their height round them, scaled (area
    average) so the digits are ``height`` px tall, then saved as JPEG (quality 85) again. A blank page gives
    its middle, 4 x 1.5 line heights of 100 px, scaled the same way."""
    h, w = photo.shape[:2]
    if boxes:
        x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
        x1, y1 = max(b[0] + b[2] for b in boxes), max(b[1] + b[3] for b in boxes)
    else:
        x0, y0, x1, y1 = w // 2 - 200, h // 2 - 50, w // 2 + 200, h // 2 + 50
    m = (y1 - y0) // 4
    crop = photo[max(0, y0 - m):min(h, y1 + m), max(0, x0 - m):min(w, x1 + m)]
    f = height / (y1 - y0)
    small = cv2.resize(crop, (max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f))),
                       interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return cv2.imdecode(jpeg, cv2.IMREAD_COLOR)


def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


@dataclass
class Tally:
    """What reading a set of (photo, written text) pairs came to."""

    n: int = 0
    exact: int = 0  # photos read exactly right
    dist: int = 0  # edit distance summed over the photos
    total: int = 0  # characters written
    blanks: int = 0  # photos with nothing written
    on_blank: int = 0  # characters read on those
    seconds: float = 0.0  # spent in classify


def read_all(clf, items, show_errors: int, errors_dir: str, what: str, ext: str) -> Tally:
    """Classify every (photo, truth) of ``items`` and count; the first ``show_errors`` misreadings are written to
    ``errors_dir`` and printed (``what`` names one item in that line)."""
    t = Tally()
    for i, (photo, truth) in enumerate(items):
        start = time.perf_counter()
        text = clf.classify(photo).text
        t.seconds += time.perf_counter() - start
        t.n += 1
        t.exact += text == truth
        t.dist += edit_distance(text, truth)
        t.total += len(truth)
        if not truth:
            t.blanks += 1
            t.on_blank += len(text)
        if text != truth and show_errors:
            show_errors -= 1
            out = Path(errors_dir)
            out.mkdir(exist_ok=True)
            cv2.imwrite(str(out / f"{i:04d}_{truth or 'blank'}_{text or 'none'}{ext}"), photo)
            print(f"{what} {i}: truth {truth!r} read {text!r}")
    return t


def emit(res: dict, out: str | None) -> None:
    """Print a benchmark's result as indented JSON, and write the same to ``out`` when given."""
    text = json.dumps(res, indent=2)
    print(text)
    if out:
        sys.path.insert(0, str(REPO))
        from digitkit.runtime.fileio import atomic_write_text

        atomic_write_text(out, text + "\n")


@dataclass(frozen=True)
class QualityResult:
    images: int
    exact: float  # share of photos read exactly right
    digit_accuracy: float  # 1 - (total edit distance / total true digits)
    blank_pages: int
    digits_on_blank_pages: int
    seconds_per_photo: float
    min_confidence: float
    model: str
    subset: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def quality(model: str, data_dir: str, n: int, dev: bool, min_confidence: float | None,
            show_errors: int = 0, max_tilt: float = 0.0, crop_height: int = 0) -> QualityResult:
    sys.path.insert(0, str(REPO))
    from digitkit.runtime.classifier import ClassifyConfig, DigitClassifier

    x, y = test_digits(data_dir)
    x, y, seed, subset = (x[:1000], y[:1000], 0, "dev") if dev else (x[1000:], y[1000:], 1, "measured")
    cfg = ClassifyConfig(model_path=model, threads=1) if min_confidence is None else \
        ClassifyConfig(model_path=model, threads=1, min_confidence=min_confidence)
    clf = DigitClassifier(config=cfg)
    t = read_all(clf, photo_set(x, y, n, seed, max_tilt=max_tilt, crop_height=crop_height), show_errors,
                 "/tmp/digitkit_photo_errors", "photo", ".jpg")
    return QualityResult(images=n, exact=t.exact / n, digit_accuracy=1 - t.dist / max(t.total, 1),
                         blank_pages=t.blanks, digits_on_blank_pages=t.on_blank, seconds_per_photo=t.seconds / n,
                         min_confidence=clf.config.min_confidence, model=model,
                         subset=subset + (f", tilted up to {max_tilt:g} deg" if max_tilt else "")
                         + (f", tight crops {crop_height} px tall" if crop_height else ""))


def rejection(model: str, data_dir: str, n: int, thresholds: tuple[float, ...]) -> dict[str, object]:
    """Accept rates by threshold: of non-digit shapes (want low) and of real digit candidates (want high)."""
    sys.path.insert(0, str(REPO))
    from digitkit.runtime.classifier import DigitClassifier
    from digitkit.runtime.preprocess import stroke_width

    clf = DigitClassifier(model_path=model, threads=1)

    def scores(photo: np.ndarray) -> np.ndarray:
        """Each candidate's confidence, 0 where the stroke-width rule already rejects it."""
        segs, probs = clf.probabilities(photo)
        ok = np.array([stroke_width(s.tile) <= clf.config.max_stroke for s in segs], bool)
        return np.where(ok, probs.max(1), 0.0) if len(segs) else np.zeros(0)

    rng = np.random.default_rng(7)
    shape_conf: list[float] = []
    shape_kind: list[str] = []
    for _ in range(n):
        photo, kinds = make_shapes_photo(rng, 1)
        conf = scores(photo)
        shape_conf.append(float(conf.max()) if len(conf) else 0.0)  # 0: not even a candidate
        shape_kind.append(kinds[0])
    x, y = test_digits(data_dir)
    digit_conf: list[float] = []
    digit_right: list[bool] = []
    for photo, truth in photo_set(x[:1000], y[:1000], n, 0, blank_every=10**9):
        segs, probs = clf.probabilities(photo)
        if len(segs) == len(truth):
            digit_conf += scores(photo).tolist()
            digit_right += [str(int(p)) == t for p, t in zip(probs.argmax(1), truth, strict=True)]
    sc, dc, dr = np.array(shape_conf), np.array(digit_conf), np.array(digit_right)
    rows = []
    for t in thresholds:
        rows.append({"threshold": t, "shapes_accepted": float((sc >= t).mean()),
                     "digits_accepted": float((dc >= t).mean()),
                     "right_digits_accepted": float((dc[dr] >= t).mean()),
                     "wrong_digits_rejected": float((dc[~dr] < t).mean()) if (~dr).any() else None})
    default = clf.config.min_confidence
    per_kind = {k: float((sc[np.array(shape_kind) == k] >= default).mean()) for k in SHAPES}
    return {"shapes": n, "shapes_passing_stroke_rule": float((sc > 0).mean()), "max_stroke": clf.config.max_stroke,
            "digits": len(dc), "by_threshold": rows,
            "default_min_confidence": default, "shapes_accepted_at_default_by_kind": per_kind}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["quality", "rejection"])
    ap.add_argument("--model", default=str(REPO / "runtime/models/digitkit_seed_int8.tflite"))
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared/data/mnist"))
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--dev", action="store_true", help="the tuning slice (test digits 0-999) instead")
    ap.add_argument("--min-confidence", type=float)
    ap.add_argument("--show-errors", type=int, default=0)
    ap.add_argument("--tilt", type=float, default=0.0, help="write each number at a slope of up to this many degrees")
    ap.add_argument("--crop-height", type=int, default=0,
                    help="cut each photo tight round its number, scaled so the number is this many px tall")
    ap.add_argument("--out", help="write the result as JSON here")
    a = ap.parse_args()
    if a.crop_height and a.tilt:
        ap.error("--crop-height cuts round the level number: not with --tilt")
    if a.what == "quality":
        res = quality(a.model, a.data_dir, a.n, a.dev, a.min_confidence, a.show_errors, a.tilt,
                      a.crop_height).to_dict()
        res["bars"] = {"exact>=0.95": res["exact"] >= 0.95, "digits>=0.97": res["digit_accuracy"] >= 0.97,
                       "blank==0": res["digits_on_blank_pages"] == 0}
    else:
        res = rejection(a.model, a.data_dir, a.n, (0.3, 0.35, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95))
    res["platform"] = platform.platform()
    emit(res, a.out)


if __name__ == "__main__":
    main()

"""One picture per image of how it was read (``digitkit classify --explain DIR``): so a person sees at once
where a reading went wrong.

Top to bottom: the photo with the final digits' boxes; the ink map (what counts as ink is white, the
threshold's grey levels below it) with every candidate box (green: read as a digit, red: rejected, blue: a
blob that was split); each split blob at its work height with every cut tried (grey) and the cuts chosen
(red); and the 28x28 tiles fed to the model, each with its label (``-`` = rejected) and score.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from digitkit.runtime.classifier import SECOND_TRIES, DigitClassifier
from digitkit.runtime.errors import InferenceError
from digitkit.runtime.fileio import write_new

_WIDTH = 720  # the picture's width


@dataclass(frozen=True)
class Explanation:
    """What :func:`explain` found: the reading's text and the picture of the stages (uint8 BGR)."""

    text: str
    picture: np.ndarray


def _fit(img: np.ndarray, width: int) -> np.ndarray:
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    f = width / img.shape[1]
    return cv2.resize(img, (width, max(1, round(img.shape[0] * f))),
                      interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_NEAREST)


def _label(img: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((18, img.shape[1], 3), 40, np.uint8)
    cv2.putText(bar, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([bar, img])


def _whole_panel(seg, pieces: list) -> np.ndarray:
    """A blob the sequence model read whole: its ink, each digit's box and label."""
    view = cv2.cvtColor(seg.crop, cv2.COLOR_GRAY2BGR)
    scale = max(1, min(6, _WIDTH // max(view.shape[1], 1)))
    view = cv2.resize(view, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    for p in pieces:
        x, y, w, h = (v * scale for v in p.box)
        cv2.rectangle(view, (x, y), (x + w - 1, y + h - 1), (255, 128, 0), 1)
        cv2.putText(view, str(p.label), (x + 2, y + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 220, 0), 1, cv2.LINE_AA)
    canvas = np.zeros((view.shape[0], _WIDTH, 3), np.uint8)
    canvas[:, :min(_WIDTH, view.shape[1])] = view[:, :_WIDTH]
    text = "".join(str(p.label) for p in pieces)
    return _label(canvas, f"blob at {seg.box}: read whole as {text} by the sequence model (not cut)")


# How the picture names a second try (DigitClassifier's SECOND_TRIES) whose reading replaced the first.
_SECOND = {"level": "second reading, level (the lone blob not turned): ", "faint": "second, fainter reading: ",
           "turned": "second reading, turned by the biggest blob's slope: "}


def _read(clf: DigitClassifier, image: np.ndarray, again: str | None = None):
    """(ink map, candidates, what ``read_candidates`` saw) for the first reading or the second try ``again``."""
    inkmap, segs = clf.stages(image, again=again)
    probs = clf._predict(np.stack([s.tile for s in segs])) if segs else np.zeros((0, len(clf._labels)))
    return inkmap, segs, clf.read_candidates("", segs, probs)


def explain(clf: DigitClassifier, image: np.ndarray) -> Explanation:
    """Read one image with ``clf`` and draw every stage of the reading."""
    bgr = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    bgr = bgr[:, :, :3].astype(np.uint8) if bgr.dtype != np.uint8 else bgr[:, :, :3]
    inkmap, segs, seen = _read(clf, image)
    second = ""
    for again in SECOND_TRIES:  # as classify does (DigitClassifier._second_tries)
        if again.asks(seen.reading):
            tried = _read(clf, image, again=again.name)
            if again.keeps(seen.reading, tried[2].reading):
                inkmap, segs, seen = tried
                second = _SECOND.get(again.name, f"second reading ({again.name}): ")
    final, rows, trace, reading = seen.final, seen.rows, seen.trace, seen.reading
    dropped = [s for s in segs if not any(s is t for t in seen.segments)]  # lines of text
    segs = seen.segments
    kept = {d.box for d in reading.digits}
    panels = []

    photo = bgr.copy()
    t = max(1, round(max(photo.shape[:2]) / 400))
    for d in reading.digits:
        x, y, w, h = d.box
        cv2.rectangle(photo, (x, y), (x + w, y + h), (0, 200, 0), t)
    panels.append(_label(_fit(photo, _WIDTH), f"photo: read {reading.text or '(nothing)'}"))

    if inkmap is not None:
        ink = inkmap.ink
        shown = np.where(ink >= inkmap.threshold, 255, (ink.astype(np.float32) * 150 / max(inkmap.threshold, 1)))
        shown = cv2.cvtColor(shown.astype(np.uint8), cv2.COLOR_GRAY2BGR)
        f = ink.shape[1] / bgr.shape[1]
        for seg in dropped:
            x, y, w, h = (round(v * f) for v in seg.box)
            cv2.rectangle(shown, (x, y), (x + w, y + h), (0, 0, 160), 1)
        for seg, (_plan, chosen) in zip(segs, trace, strict=True):
            x, y, w, h = (round(v * f) for v in seg.box)
            colour = (255, 128, 0) if len(chosen) > 1 else (0, 200, 0) if seg.box in kept else (0, 0, 255)
            cv2.rectangle(shown, (x, y), (x + w, y + h), colour, 1)
        panels.append(_label(_fit(shown, _WIDTH), f"{second}ink map ({inkmap.polarity}, threshold "
                                                  f"{inkmap.threshold}); green kept, red rejected, dark red text "
                                                  "line, blue split"))
        for seg, (plan, chosen) in zip(segs, trace, strict=True):
            if plan is None:
                continue
            if isinstance(plan, list):  # read whole by the sequence model: its pieces' boxes
                panels.append(_whole_panel(seg, plan))
                continue
            work = cv2.resize(seg.crop, (int(plan.paths.max()), plan.paths.shape[1]), interpolation=cv2.INTER_AREA)
            view = cv2.cvtColor(work, cv2.COLOR_GRAY2BGR)
            ends = {plan.spans[k][1] for k in chosen[:-1]}
            for c, path in enumerate(plan.paths[1:-1], 1):
                colour = (0, 0, 255) if c in ends else (120, 120, 120)
                for yy, xx in enumerate(path):
                    if 0 <= xx < view.shape[1]:
                        view[yy, xx] = colour
            scale = max(1, min(6, _WIDTH // max(view.shape[1], 1)))
            view = cv2.resize(view, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
            canvas = np.zeros((view.shape[0], _WIDTH, 3), np.uint8)
            canvas[:, :min(_WIDTH, view.shape[1])] = view[:, :_WIDTH]
            panels.append(_label(canvas, f"blob at {seg.box}: {len(plan.paths) - 2} cuts tried (grey), "
                                         f"{max(len(chosen) - 1, 0)} chosen (red)"))

    cell = 28 * 3
    tiles = []
    second = seen.second or (False,) * len(final)
    for seg, p, asked in zip(final, rows, second, strict=True):
        label = int(p.argmax())
        ok = seg.box in kept
        tile = cv2.cvtColor(cv2.resize(seg.tile, (cell, cell), interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR)
        name = clf._labels[label] if ok else "-"
        if asked:  # the sequence model's second opinion changed this tile's row: vetoed, or read the same digit
            cv2.rectangle(tile, (0, 0), (cell - 1, cell - 1), (0, 220, 255), 2)
        cv2.putText(tile, f"{name} {p[label]:.2f}", (2, cell - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (0, 220, 0) if ok else (0, 0, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    per_row = _WIDTH // cell
    for r in range(0, len(tiles), per_row):
        row = np.zeros((cell, _WIDTH, 3), np.uint8)
        for k, tile in enumerate(tiles[r:r + per_row]):
            row[:, k * cell:(k + 1) * cell] = tile
        panels.append(_label(row, "tiles fed to the model: label score (- = rejected; yellow frame: the "
                                         "sequence model's second opinion)") if r == 0 else row)
    return Explanation(text=reading.text, picture=np.vstack(panels))


class ExplainWriter:
    """Writes one ``<name>.explain.png`` per image into a folder, like the annotated copies: atomically, and never
    replacing a file already there (a taken name gets ``-2``, ``-3``...)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        from digitkit.runtime.draw import AnnotationWriter

        try:
            AnnotationWriter(folder)  # the same up-front check: created, and written to once
        except InferenceError as exc:
            raise InferenceError(str(exc).replace("--save-annotated", "--explain")) from None
        self.folder = Path(folder)
        self._next: dict[str, int] = {}

    def write(self, clf: DigitClassifier, path: str, image: np.ndarray) -> Path:
        """Explain how ``clf`` reads ``image`` and save the picture; return the written path."""
        picture = explain(clf, image).picture
        stem = (Path(path).stem if not path.startswith("<") else "array") + ".explain"

        def encode(tmp: Path) -> None:
            if not cv2.imwrite(str(tmp), picture, [cv2.IMWRITE_PNG_COMPRESSION, 3]):
                raise OSError("OpenCV could not encode the explanation as PNG")

        target, n = write_new(self.folder, stem, ".png", encode, first=self._next.get(stem, 1))
        self._next[stem] = n + 1
        return target

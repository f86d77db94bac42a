"""``--save-annotated``: copies of the images with each digit's box, label and confidence drawn on."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from digitkit.runtime.errors import InferenceError
from digitkit.runtime.fileio import atomic_path

_GREEN = (40, 180, 40)
_WRITABLE = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def annotate(image: np.ndarray, reading: object) -> np.ndarray:
    """A BGR copy of ``image`` with the reading's digits boxed and labelled ``label confidence``."""
    out = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image[:, :, :3].copy()
    scale = max(1, round(max(out.shape[:2]) / 500))
    if max(out.shape[:2]) < 100:  # a 28x28 tile: draw on a bigger copy so the text is legible
        f = 100 // max(out.shape[:2]) + 1
        out = cv2.resize(out, None, fx=f, fy=f, interpolation=cv2.INTER_NEAREST)
    else:
        f = 1
    for d in reading.digits:  # type: ignore[attr-defined]
        x, y, w, h = (v * f for v in d.box)
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), _GREEN, scale + 1)
        text = f"{d.label} {d.confidence:.2f}"
        ty = y - 4 if y > 16 * scale else y + h + 14 * scale
        cv2.putText(out, text, (x, ty), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, _GREEN, scale, cv2.LINE_AA)
    return out


class AnnotationWriter:
    """Writes annotated copies into one folder (atomically), keeping file names unique within a run."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InferenceError(f"cannot create --save-annotated folder {self.folder}: "
                                 f"{exc.strerror or exc}") from None
        self._used: set[str] = set()

    def target(self, source: str) -> Path:
        src = Path(source)
        stem = src.stem if not source.startswith("<") else "array"
        suffix = src.suffix.lower() if src.suffix.lower() in _WRITABLE else ".png"
        name, n = f"{stem}{suffix}", 1
        while name in self._used:
            n += 1
            name = f"{stem}-{n}{suffix}"
        self._used.add(name)
        return self.folder / name

    def write(self, reading: object, image: np.ndarray) -> Path:
        """Draw ``reading`` on ``image`` and save it; return the written path."""
        target = self.target(reading.path)  # type: ignore[attr-defined]
        with atomic_path(target) as tmp:
            if not cv2.imwrite(str(tmp), annotate(image, reading)):
                raise OSError(f"OpenCV could not encode {target.suffix}")
        return target

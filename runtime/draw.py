"""``--save-annotated``: copies of the images with each digit's box, label and confidence drawn on.

A copy never replaces an existing file: another run's copies (or anything else in the folder) keep their
names and the new copy takes the next free one, ``a-2.png``, ``a-3.png``... The name is claimed atomically
(see :func:`digitkit.runtime.fileio.write_new`), so two runs writing into one folder at once lose nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from digitkit.runtime.errors import InferenceError
from digitkit.runtime.fileio import remove_stale_temps, temp_beside, write_new

_GREEN = (40, 180, 40)
_WRITABLE = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def annotate(image: np.ndarray, reading: object, in_place: bool = False) -> np.ndarray:
    """A BGR copy of ``image`` with the reading's digits boxed and labelled ``label confidence``.

    ``in_place``: draw on ``image`` itself when it is BGR (no second copy of a big picture in memory).
    """
    if image.ndim == 2:
        out = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    else:
        out = image if in_place and image.shape[2] == 3 and image.flags.writeable else image[:, :, :3].copy()
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
    """Writes annotated copies into one folder, atomically and without replacing any file already there.

    Raises:
        InferenceError: (exit 2, at construction) the folder cannot be created or written to.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(self.folder)  # what runs killed mid-write left behind
            temp_beside(self.folder / "write-test").unlink()  # once, up front: not once per image
        except OSError as exc:
            raise InferenceError(f"cannot write to the --save-annotated folder {self.folder}: "
                                 f"{exc.strerror or exc}; choose a folder you can write to") from None
        self._next: dict[str, int] = {}  # file name -> the next number to try (no rescans of -2, -3...)

    def write(self, reading: object, image: np.ndarray) -> Path:
        """Draw ``reading`` on ``image`` (in place) and save it under the first free name; return that path."""
        source: str = reading.path  # type: ignore[attr-defined]
        src = Path(source)
        stem = src.stem if not source.startswith("<") else "array"
        suffix = src.suffix.lower() if src.suffix.lower() in _WRITABLE else ".png"
        drawn = annotate(image, reading, in_place=True)

        def encode(tmp: Path) -> None:
            if not cv2.imwrite(str(tmp), drawn):
                raise OSError(f"OpenCV could not encode {suffix}")

        key = stem + suffix
        path, n = write_new(self.folder, stem, suffix, encode, first=self._next.get(key, 1))
        self._next[key] = n + 1
        return path

"""What a reading is: the options of ``digitkit classify`` (:class:`ClassifyConfig`), its results
(:class:`Reading`, :class:`Digit`, and :class:`Candidates`, the stages ``--explain`` draws), and the shipped
models by short name. No work is done here; :mod:`digitkit.runtime.classifier` does the reading.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from digitkit.runtime.errors import InferenceError
from digitkit.runtime.images import DEFAULT_MAX_PIXELS
from digitkit.runtime.segment import Segment, SegmentConfig

MODELS_DIR = Path(__file__).resolve().parent / "models"
# The shipped models by short name (like Ultralytics' n/s/m): `--model fast` (the default) or `--model accurate`.
SHIPPED_MODELS = {"fast": "digitkit_seed_int8.tflite", "accurate": "digitkit_accurate_int8.tflite"}
DEFAULT_MODEL = MODELS_DIR / SHIPPED_MODELS["fast"]
SEQUENCE_MODEL = MODELS_DIR / "digitkit_lines_int8.tflite"  # reads blobs of touching digits whole


def resolve_model(model: str | os.PathLike[str] | None) -> Path:
    """A shipped model's short name (``fast``, ``accurate``; None = ``fast``) or a path -> the .tflite path.

    Raises:
        InferenceError: a shipped model that is missing from this installation.
    """
    name = "fast" if model is None else os.fspath(model)
    if name not in SHIPPED_MODELS:
        return Path(name)
    path = MODELS_DIR / SHIPPED_MODELS[name]
    if not path.is_file():
        here = [n for n, f in SHIPPED_MODELS.items() if (MODELS_DIR / f).is_file()] or ["none"]
        raise InferenceError(f"the shipped {name!r} model {path} is missing from this installation (it has: "
                             f"{', '.join(here)}); pass one of those or --model FILE.tflite")
    return path


DEFAULT_MIN_CONFIDENCE = 0.35  # see benchmarks/photos.py rejection and the README: measured, not guessed


@dataclass(frozen=True)
class ClassifyConfig:
    """Every option of ``digitkit classify``; the CLI and the Python twin share these defaults."""

    model_path: str | None = None  # a .tflite, or a shipped model's name ("fast", "accurate"); None = "fast"
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    threads: int | None = None
    backend: str | None = None  # "litert", "tflite-runtime" or None (first installed)
    polarity: str = "auto"
    min_contrast: int = 40  # faintest ink, (paper - ink) / paper * 255
    max_stroke: float = 0.62  # widest stroke / digit box; wider is a blob, not writing (MNIST max: 0.60)
    batch_size: int = 64  # digit tiles per interpreter call
    max_side: int = 1280  # bigger pictures are scaled down first (boxes are reported in the original pixels)
    max_pixels: int = DEFAULT_MAX_PIXELS  # a file whose header claims more is refused before decoding
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    # Blobs of touching digits are first read whole by the shipped sequence model (runtime/sequence.py), and
    # cut (runtime/split.py) only when that reading does not stand; False: always cut.
    read_whole: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"model_path": self.model_path, "min_confidence": self.min_confidence, "threads": self.threads,
                "backend": self.backend, "polarity": self.polarity, "min_contrast": self.min_contrast,
                "max_stroke": self.max_stroke, "read_whole": self.read_whole,
                "batch_size": self.batch_size, "max_side": self.max_side, "max_pixels": self.max_pixels}


@dataclass(frozen=True)
class Digit:
    """One digit read: its label, the model's probability for it, and its box (x, y, w, h) in pixels."""

    label: int
    confidence: float
    box: tuple[int, int, int, int]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "confidence": round(self.confidence, 4), "box": list(self.box)}


@dataclass(frozen=True)
class Reading:
    """What one image says: its digits left to right and their labels joined (``""`` when none).

    ``pages`` > 1: the file has more pages or frames (a multi-page TIFF, an animated GIF); page 1 was read.
    """

    path: str
    text: str
    digits: tuple[Digit, ...]
    pages: int = 1

    def to_dict(self) -> dict[str, Any]:
        out = {"path": self.path, "text": self.text, "digits": [d.to_dict() for d in self.digits]}
        if self.pages > 1:  # said only when it matters: the usual line keeps its three keys
            out.update(page=1, pages=self.pages)
        return out


@dataclass(frozen=True)
class Candidates:
    """How one image was read, stage by stage (what ``--explain`` draws): the candidates that went to the
    splitter, what it tried on each (plan, chosen stretches), the final tiles, their model rows, the reading, and
    which final tiles the sequence model's second opinion changed (vetoed, or read as the same digit)."""

    segments: list[Segment]
    trace: list[tuple[Any, list[int]]]
    final: list[Segment]
    rows: np.ndarray
    reading: Reading
    second: tuple[bool, ...] = ()

"""The images a conversion needs: a calibration set from the training split, and the test set.

The converters never read datasets themselves (imports flow toolkit -> converters -> runtime): the caller
(``digitkit.toolkit.convert``, which owns the data layer and the validation split) passes the arrays in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from digitkit.converters.errors import ConversionError

DEBUG_SAMPLES = 200  # images the per-layer debugger compares float and int8 outputs on


@dataclass(frozen=True)
class ConversionData:
    """Calibration images (training split only, never validation or test) and the test set."""

    calibration: np.ndarray
    debug_images: np.ndarray  # for --debug-layers: from the validation split (calibration if it is empty)
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    sha256: str
    train_split_size: int  # images in the training split the calibration set was drawn from

    def provenance(self) -> dict[str, Any]:
        return {"data_source": self.source, "data_sha256": self.sha256,
                "calibration_samples": int(len(self.calibration)), "train_split_size": self.train_split_size,
                "test_size": int(len(self.y_test))}


def balanced_sample(y: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of ``n`` samples drawn (seeded) as evenly as possible over the classes in ``y``."""
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)]
    picked: list[int] = []
    depth = 0
    while len(picked) < n and any(depth < len(p) for p in per_class):
        for p in per_class:
            if depth < len(p) and len(picked) < n:
                picked.append(int(p[depth]))
        depth += 1
    return np.array(picked, dtype=np.int64)


def prepare(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
            x_test: np.ndarray, y_test: np.ndarray, *, samples: int, seed: int = 0, source: str = "",
            sha256: str = "") -> ConversionData:
    """Draw ``samples`` calibration images, balanced over the classes and seeded, from the training split
    ``x_train``/``y_train`` (the caller holds the validation split ``x_val``/``y_val`` out, as training did).

    Raises:
        ConversionError: no training or no test images.
    """
    if len(x_test) == 0:
        raise ConversionError(f"{source}: the test set is empty; verification needs test images")
    idx = balanced_sample(np.asarray(y_train), samples, seed=seed)
    if len(idx) == 0:
        raise ConversionError(f"{source}: the calibration set is empty (training split has "
                              f"{len(y_train)} images); use a larger dataset")
    val_idx = balanced_sample(np.asarray(y_val), DEBUG_SAMPLES, seed=seed)
    debug = x_val[val_idx] if len(val_idx) else x_train[idx[:DEBUG_SAMPLES]]
    return ConversionData(calibration=np.asarray(x_train)[idx], debug_images=debug, x_test=np.asarray(x_test),
                          y_test=np.asarray(y_test), source=str(source), sha256=str(sha256),
                          train_split_size=int(len(y_train)))

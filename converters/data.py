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
    # For a model with a "not a digit" output: non-digit tiles to calibrate with (from the training
    # negatives), and the validation digits and negatives the rejection threshold is chosen on.
    calibration_negatives: np.ndarray | None = None
    val_digits: np.ndarray | None = None
    val_negatives: np.ndarray | None = None
    split_seed: int = 0

    def provenance(self) -> dict[str, Any]:
        return {"data_source": self.source, "data_sha256": self.sha256,
                "calibration_samples": int(len(self.calibration)), "train_split_size": self.train_split_size,
                "test_size": int(len(self.y_test)), "split_seed": self.split_seed}


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
            sha256: str = "", negatives: np.ndarray | None = None, val_negatives: np.ndarray | None = None,
            split_seed: int = 0) -> ConversionData:
    """Draw ``samples`` calibration images, balanced over the classes and seeded, from the training split
    ``x_train``/``y_train`` (the caller holds the validation split ``x_val``/``y_val`` out, as training did).
    ``negatives``/``val_negatives``: the run's non-digit tiles, for a model with a "not a digit" output (one
    calibration image in 11 is drawn from them, as one training class in 11 was).

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
    neg_cal = None
    if negatives is not None and len(negatives):
        rng = np.random.default_rng(seed)
        neg_cal = np.asarray(negatives)[rng.permutation(len(negatives))[:max(1, samples // 11)]]
    return ConversionData(calibration=np.asarray(x_train)[idx], debug_images=debug, x_test=np.asarray(x_test),
                          y_test=np.asarray(y_test), source=str(source), sha256=str(sha256),
                          train_split_size=int(len(y_train)), calibration_negatives=neg_cal,
                          val_digits=np.asarray(x_val) if len(x_val) else None,
                          val_negatives=val_negatives, split_seed=int(split_seed))

"""The images a conversion needs: a calibration set from the training split, and the test set.

The MNIST data layer lives in ``toolkit.data`` (IDX/npz reading, validation, the seeded validation split,
balanced sampling). This module is the converters' one door to it, imported lazily so that
``import converters`` stays cheap and a caller that already holds the arrays (the pipeline, tests) passes
them in and never goes through the toolkit at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from converters.errors import ConversionError

DEBUG_SAMPLES = 200  # images the per-layer debugger compares float and int8 outputs on


class Dataset(Protocol):
    """Anything shaped like ``toolkit.data.MnistData``: uint8 images (N, 28, 28) and labels (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    sha256: str


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


def prepare(data: Dataset, samples: int, seed: int = 0, val_fraction: float = 0.1) -> ConversionData:
    """Draw ``samples`` calibration images, balanced over the classes and seeded, from the training split
    (the training set minus the validation split ``digitkit train`` holds out with the same fraction and seed).

    Raises:
        ConversionError: no training or no test images.
    """
    from toolkit.data import balanced_sample, split_validation

    if len(data.x_test) == 0:
        raise ConversionError(f"{data.source}: the test set is empty; verification needs test images")
    if len(data.x_train) == 0:
        raise ConversionError(f"{data.source}: no training images, so the calibration set is empty")
    split = split_validation(np.asarray(data.x_train), np.asarray(data.y_train), val_fraction, seed=0)
    idx = balanced_sample(split.y_train, samples, seed=seed)
    if len(idx) == 0:
        raise ConversionError(f"{data.source}: the calibration set is empty (training split has "
                              f"{len(split.y_train)} images); use a larger dataset")
    val_idx = balanced_sample(split.y_val, DEBUG_SAMPLES, seed=seed)
    debug = split.x_val[val_idx] if len(val_idx) else split.x_train[idx[:DEBUG_SAMPLES]]
    return ConversionData(calibration=split.x_train[idx], debug_images=debug, x_test=np.asarray(data.x_test),
                          y_test=np.asarray(data.y_test), source=str(data.source), sha256=str(data.sha256),
                          train_split_size=int(len(split.y_train)))


def load(data_dir: str | os.PathLike[str] | None, samples: int, seed: int = 0,
         val_fraction: float = 0.1) -> ConversionData:
    """Load MNIST from ``data_dir`` (or $DIGITKIT_DATA, the Keras cache) and :func:`prepare` it.

    Raises:
        ConversionError: the data could not be found or read (the data layer's message, exit 2).
    """
    from toolkit.data import load_mnist
    from toolkit.errors import ToolkitError

    try:
        data = load_mnist(None if data_dir is None else str(data_dir))
    except ToolkitError as exc:
        raise ConversionError(str(exc), exc.exit_code) from None
    return prepare(data, samples, seed, val_fraction)

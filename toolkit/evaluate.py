"""Evaluate a .keras or .tflite model on the test set: accuracy, per-class accuracy, confusion matrix."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from digitkit.toolkit.data import load_mnist
from digitkit.toolkit.errors import ToolkitError
from digitkit.toolkit.twins import make_callable


@dataclass(frozen=True)
class EvalResult:
    """Test-set figures for one model."""

    model_path: str
    format: str
    test_size: int
    accuracy: float
    per_class_accuracy: list[float | None]  # None: the class is absent from the test set (JSON null, never NaN)
    confusion: list[list[int]]  # rows: true label, columns: predicted label
    data_source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_keras_model(path: str | os.PathLike[str]) -> Any:
    """Load a .keras file, turning every way it can fail into one clear ToolkitError."""
    path = Path(path)
    if not path.is_file():
        raise ToolkitError(f"model file {path} not found")
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises ValueError, OSError, zipfile errors... all mean "not a model"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ToolkitError(f"{path}: not a readable Keras model ({first[:200]})") from None


def predict_keras(model: Any, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Probabilities from a Keras model for uint8 images (N, 28, 28)."""
    x = (images.astype(np.float32) / 255.0)[..., None]
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))


def predict_file(model_path: str | os.PathLike[str], images: np.ndarray,
                 threads: int | None = None) -> np.ndarray:
    """Probabilities for uint8 images from a .keras (via Keras) or .tflite (via the runtime) model."""
    path = Path(model_path)
    if path.suffix == ".tflite":
        from digitkit.runtime.interpreter import TFLiteModel

        return TFLiteModel(path, threads=threads).predict_proba(images)
    if path.suffix in (".keras", ".h5"):
        return predict_keras(load_keras_model(path), images)
    raise ToolkitError(f"{path}: unknown model format {path.suffix!r}; expected .keras or .tflite")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: int = 10,
                     outputs: int | None = None) -> np.ndarray:
    """Counts (classes, outputs): row = true label, column = predicted output. A model with a "not a digit"
    output has one column more than rows (a digit answered "not a digit" lands there, and is an error)."""
    outputs = classes if outputs is None else outputs
    flat = y_true.astype(np.int64) * outputs + y_pred.astype(np.int64)
    return np.bincount(flat, minlength=classes * outputs).reshape(classes, outputs)


def evaluate(model_path: str | os.PathLike[str], data_dir: str | None = None, limit: int | None = None) -> EvalResult:
    """Test accuracy, per-class accuracy and the confusion matrix of a .keras or .tflite model.

    Raises:
        ToolkitError: missing or unreadable model, or unusable data.
    """
    path = Path(model_path)
    if not path.is_file():
        raise ToolkitError(f"model file {path} not found")
    data = load_mnist(data_dir)
    x, y = data.x_test, data.y_test
    if limit is not None:
        x, y = x[:limit], y[:limit]
    probs = predict_file(path, x)
    pred = probs.argmax(axis=-1)
    cm = confusion_matrix(y, pred, classes=10, outputs=max(10, probs.shape[-1]))
    totals = cm.sum(axis=1)
    per_class = [float(cm[i, i] / totals[i]) if totals[i] else None for i in range(len(cm))]
    return EvalResult(str(path), path.suffix.lstrip("."), int(len(y)), float(np.mean(pred == y)), per_class,
                      cm.tolist(), data.source)


make_callable(__name__)  # digitkit.toolkit.evaluate(...) calls evaluate() (see digitkit.toolkit.twins)

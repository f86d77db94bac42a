"""Verification: the float model through Keras, the converted model through the runtime's interpreter
(LiteRT, not TensorFlow), both on the full test set; and the per-layer error report for --debug-layers.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from digitkit.converters.errors import ConversionError
from digitkit.converters.tflite import layer_debugger, quiet_tf, to_float
from digitkit.runtime.errors import InferenceError
from digitkit.runtime.interpreter import ModelMetadata, TFLiteModel

# Candidate rejection thresholds on the "not a digit" probability: the int8 output's own steps (1/256).
THRESHOLD_GRID = tuple(k / 256 for k in range(1, 256))


@dataclass(frozen=True)
class Verification:
    """Both models' test accuracy, the drop, and how often they predict the same class."""

    test_size: int
    float_accuracy: float
    converted_accuracy: float
    drop_pp: float  # (float - converted) * 100; negative when the converted model does better
    agreement: float  # share of test images where both predict the same class
    backend: str
    # What the runtime reads: the best digit output, a test digit whose "not a digit" probability reaches the
    # embedded threshold counting as an error. None for a digits-only model or one without a threshold.
    read_accuracy: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def keras_predict(model: Any, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Predicted classes from a Keras model for uint8 images (N, 28, 28)."""
    probs = model.predict(to_float(images), batch_size=batch_size, verbose=0)
    return np.asarray(probs).argmax(axis=-1)


def verify(model: Any, tflite_path: str | os.PathLike[str], x_test: np.ndarray, y_test: np.ndarray,
           threads: int | None = None, metadata: ModelMetadata | None = None) -> Verification:
    """Compare the float Keras ``model`` and the .tflite at ``tflite_path`` on (x_test, y_test).

    Raises:
        ConversionError: the converted file does not load or run in the runtime.
    """
    y = np.asarray(y_test)
    float_pred = keras_predict(model, x_test)
    try:
        with quiet_tf():  # the interpreter announces its XNNPACK delegate on stderr
            runtime_model = TFLiteModel(tflite_path, threads=threads, metadata=metadata)
        probs = runtime_model.predict_proba(np.asarray(x_test))
    except InferenceError as exc:
        raise ConversionError(f"the converted model does not run in the runtime: {exc}") from None
    converted_pred = probs.argmax(axis=-1)
    float_acc = float(np.mean(float_pred == y))
    conv_acc = float(np.mean(converted_pred == y))
    md = runtime_model.metadata
    read_acc = None
    if md.not_a_digit is not None and md.reject_threshold is not None:
        digits = np.asarray(md.digit_indices)
        read = (digits[probs[:, digits].argmax(axis=-1)] == y) & (probs[:, md.not_a_digit] < md.reject_threshold)
        read_acc = float(np.mean(read))
    return Verification(
        test_size=int(len(y)), float_accuracy=float_acc, converted_accuracy=conv_acc,
        drop_pp=round((float_acc - conv_acc) * 100.0, 6), agreement=float(np.mean(float_pred == converted_pred)),
        backend=runtime_model.backend, read_accuracy=read_acc,
    )


@dataclass(frozen=True)
class Rejection:
    """The converted model's "not a digit" threshold, chosen on validation data (never the test set), and the
    trade-off around it."""

    threshold: float  # reject a candidate whose not-a-digit probability is at least this
    keep_target: float  # share of validation digits the threshold had to keep
    val_digits: int
    val_digits_kept: float
    val_negatives: int
    val_negatives_rejected: float
    curve: list[dict[str, float]]  # threshold -> digits kept, negatives rejected (a few points)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_threshold(p_digits: np.ndarray, p_negatives: np.ndarray, keep: float) -> Rejection:
    """The lowest threshold (most rejection) that still keeps ``keep`` of the validation digits.

    Args:
        p_digits: the not-a-digit probability of each validation digit.
        p_negatives: the same for each validation non-digit tile.
        keep: the share of digits that must stay digits, e.g. 0.999.
    """
    def kept(t: float) -> float:
        return float(np.mean(p_digits < t)) if len(p_digits) else 1.0

    def rejected(t: float) -> float:
        return float(np.mean(p_negatives >= t)) if len(p_negatives) else 0.0

    threshold = next((t for t in THRESHOLD_GRID if kept(t) >= keep), THRESHOLD_GRID[-1])
    points = sorted({threshold, 0.1, 0.25, 0.5, 0.75, 0.9})
    return Rejection(threshold=threshold, keep_target=keep, val_digits=int(len(p_digits)),
                     val_digits_kept=kept(threshold), val_negatives=int(len(p_negatives)),
                     val_negatives_rejected=rejected(threshold),
                     curve=[{"threshold": t, "digits_kept": kept(t), "negatives_rejected": rejected(t)}
                            for t in points])


def rejection(tflite_path: str | os.PathLike[str], metadata: ModelMetadata, val_digits: np.ndarray,
              val_negatives: np.ndarray, keep: float, threads: int | None = None) -> Rejection:
    """Run the converted model (through the runtime) on validation digits and non-digits; choose the threshold."""
    with quiet_tf():
        model = TFLiteModel(tflite_path, threads=threads, metadata=metadata)
    index = metadata.not_a_digit
    assert index is not None
    return choose_threshold(model.predict_proba(val_digits)[:, index], model.predict_proba(val_negatives)[:, index],
                            keep)


@dataclass(frozen=True)
class LayerError:
    """Quantization error of one layer's output, int8 vs float, from TF's QuantizationDebugger."""

    layer: str  # the Keras layer, read from the tensor name
    op: str
    tensor: str
    elements: int
    rmse: float
    scale: float
    rmse_per_scale: float  # RMSE in units of the quantization step: ~0.29 (1/sqrt(12)) is ideal rounding
    max_abs_error: float
    mean_error: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def layer_name(tensor: str) -> str:
    """``model/re_lu_1/Relu;model/conv2d_1/BiasAdd`` -> ``conv2d_1``: the fused tensor's last Keras layer."""
    parts = tensor.split(";")[-1].split("/")
    return parts[1] if len(parts) >= 3 else tensor


def layer_errors(model: Any, calibration: np.ndarray, debug_images: np.ndarray) -> list[LayerError]:
    """Per-layer quantization error of the int8 model on ``debug_images``, in execution order.

    Raises:
        ConversionError: TensorFlow's debugger failed on this model.
    """
    try:
        debugger = layer_debugger(model, calibration, debug_images)
        text = io.StringIO()
        debugger.layer_statistics_dump(text)
    except ConversionError:
        raise
    except Exception as exc:  # the debugger is experimental; its failures are not the user's input
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ConversionError(f"the per-layer quantization debugger failed: {first}") from None
    rows = []
    for row in csv.DictReader(io.StringIO(text.getvalue())):
        mse = float(row["mean_squared_error"])
        scale = float(row["scale"])
        rmse = math.sqrt(max(mse, 0.0))
        rows.append(LayerError(
            layer=layer_name(row["tensor_name"]), op=row["op_name"], tensor=row["tensor_name"],
            elements=int(float(row["num_elements"])),
            rmse=rmse, scale=scale, rmse_per_scale=rmse / scale if scale > 0 else float("nan"),
            max_abs_error=float(row["max_abs_error"]), mean_error=float(row["mean_error"]),
        ))
    return rows

"""Scoring a .tflite with LiteRT's interpreter alone, not the project's code: the independent check the
tests of converted and shipped models compare the project's figures with."""

from __future__ import annotations

import numpy as np


def probabilities(interp, images: np.ndarray) -> np.ndarray:
    """Each uint8 28x28 image fed raw, one at a time, to an allocated ``interp``; its output dequantized."""
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    scale, zero = out["quantization"]
    rows = []
    for image in images:
        interp.set_tensor(inp["index"], image.reshape(1, 28, 28, 1).astype(np.uint8))
        interp.invoke()
        rows.append((interp.get_tensor(out["index"])[0].astype(np.float32) - zero) * scale)
    return np.array(rows)


def read_accuracy(probs: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """What the runtime reads: the best digit output right, and "not a digit" (output 10) below ``threshold``."""
    return float(np.mean((probs[:, :10].argmax(1) == labels) & (probs[:, 10] < threshold)))

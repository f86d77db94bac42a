"""The tiny test model: the seed network trained briefly on the synthetic digits, converted to full int8.

Building it needs TensorFlow (the ``train`` extra). A runtime-only install (a Raspberry Pi, the emulated
arm64 root of ``make test-pi``) cannot build it; it can be handed one built elsewhere through
``$DIGITKIT_TEST_TINY_INT8`` (``pi/make_inputs.py`` writes it), and otherwise the tests that need it skip.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

PREBUILT_ENV = "DIGITKIT_TEST_TINY_INT8"


def have_tensorflow() -> bool:
    """Whether TensorFlow can be imported here (without importing it)."""
    return importlib.util.find_spec("tensorflow") is not None


def train_tiny_keras(out: Path, data_dir: Path, not_a_digit: bool = True) -> Path:
    """Train the seed architecture for two short epochs on the synthetic data; save it as ``out`` (.keras).
    ``not_a_digit=False`` makes a digits-only (10-output) model."""
    from digitkit.toolkit.train import train

    train(out=str(out), arch="seed", epochs=2, batch_size=64, data_dir=str(data_dir), augment=False,
          not_a_digit=not_a_digit)
    return out


def convert_tiny_int8(keras_path: Path, data_dir: Path, out: Path) -> Path:
    """A full-int8 .tflite (uint8 input, uint8 output) of ``keras_path``, made directly with TF's converter
    so runtime tests do not depend on the converters package."""
    import keras
    import tensorflow as tf

    from digitkit.toolkit.data import load_mnist

    model = keras.models.load_model(keras_path, compile=False)
    x = load_mnist(data_dir).x_train[:200].astype(np.float32)[..., None] / 255.0
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[i:i + 1]] for i in range(len(x)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.uint8
    conv.inference_output_type = tf.uint8
    out.write_bytes(conv.convert())
    return out

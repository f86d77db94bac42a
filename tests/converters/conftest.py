"""Fixtures for the converter tests: converted models of the session's tiny Keras model, and bad inputs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

# The tiny model sees 300 synthetic test images: one image is 0.33 pp, so fast tests gate loosely and
# assert tolerances; the real 0.3 pp default is exercised by the slow tests on the real test set.
TINY_MAX_DROP = 5.0


@pytest.fixture(scope="session")
def converted(tmp_path_factory: pytest.TempPathFactory, tiny_keras_model: Path, synth_data_dir: Path):
    """``converted(mode, io=None)`` -> (report, path): each distinct conversion is run once per session."""
    from digitkit.toolkit.convert import convert

    cache: dict[tuple[str, str | None], tuple[object, Path]] = {}

    def make(mode: str = "int8", io: str | None = None):
        if (mode, io) not in cache:
            out = tmp_path_factory.mktemp(f"conv_{mode}_{io}") / f"{mode}.tflite"
            report = convert(tiny_keras_model, out, mode=mode, io=io, data_dir=str(synth_data_dir),
                             max_drop=TINY_MAX_DROP)
            cache[(mode, io)] = (report, out)
        return cache[(mode, io)]

    return make


@pytest.fixture(scope="session")
def wrong_shape_keras(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid .keras model whose input is 32x32x1, not 28x28x1."""
    import keras

    inputs = keras.Input(shape=(32, 32, 1))
    x = keras.layers.Flatten()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    out = tmp_path_factory.mktemp("wrong_shape") / "wide.keras"
    model.save(out)
    return out


@pytest.fixture()
def unwritable_dir(tmp_path: Path) -> Path:
    """A folder nothing can be created in (chmod 555; as root, whose writes ignore modes, /sys)."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    candidates = [folder, Path("/sys")]
    try:
        for candidate in candidates:
            try:
                fd, name = tempfile.mkstemp(dir=candidate)
            except OSError:
                yield candidate
                return
            os.close(fd)
            os.unlink(name)
        pytest.skip("no unwritable folder available on this machine")
    finally:
        folder.chmod(0o755)


@pytest.fixture(scope="session")
def empty_train_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MNIST-format folder whose training files hold zero images (so the calibration set is empty)."""
    from synth import idx_bytes, synth_digits

    folder = tmp_path_factory.mktemp("empty_train")
    x_test, y_test = synth_digits(20, 3)
    for stem, arr in (("train-images-idx3-ubyte", np.zeros((0, 28, 28), np.uint8)),
                      ("train-labels-idx1-ubyte", np.zeros((0,), np.uint8)),
                      ("t10k-images-idx3-ubyte", x_test), ("t10k-labels-idx1-ubyte", y_test)):
        (folder / stem).write_bytes(idx_bytes(arr))
    return folder

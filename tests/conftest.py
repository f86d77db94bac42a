"""Session fixtures: a synthetic MNIST-format dataset, a 1-epoch tiny Keras model and its int8 .tflite.

Built once per session; everything seeded. The real data (``$DIGITKIT_DATA``) is only for slow tests.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Tests load many throwaway models: their "probe passed" markers go to a test cache, not the user's ~/.cache.
os.environ.setdefault("DIGITKIT_CACHE_DIR", os.path.join(tempfile.gettempdir(), "digitkit-test-cache"))

from synth import synth_digits, write_idx_folder  # noqa: E402  (tests/ is on pythonpath, see pyproject)
from tiny import PREBUILT_ENV, convert_tiny_int8, have_tensorflow, train_tiny_keras  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

# Hypothesis: a modest "ci" profile by default; `HYPOTHESIS_PROFILE=long` for the long fuzz run. No deadline:
# the machines are shared and a slow example is a benchmark question, not a failure. Tests that pin their
# own max_examples keep it under either profile.
settings.register_profile("ci", max_examples=200, deadline=None)
settings.register_profile("long", max_examples=20_000, deadline=None)
# Emulated arm64 (`make test-pi`) runs Python 10-50 times slower: fewer examples there, the same properties.
settings.register_profile("emulated", max_examples=25, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``tensorflow`` skip, saying why, where TensorFlow is not installed (a Pi's runtime-only
    install); everywhere else they run."""
    if item.get_closest_marker("tensorflow") and not have_tensorflow():
        pytest.skip("needs TensorFlow (the train extra); runtime-only install")


@pytest.fixture(scope="session")
def synth_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the four gzip IDX files of a synthetic 1200/300-image dataset."""
    return write_idx_folder(tmp_path_factory.mktemp("synth_mnist"))


@pytest.fixture(scope="session")
def synth_test_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The synthetic test images and labels (same as in ``synth_data_dir``)."""
    return synth_digits(300, 1)


@pytest.fixture(scope="session")
def tiny_keras_model(tmp_path_factory: pytest.TempPathFactory, synth_data_dir: Path) -> Path:
    """The seed architecture as `digitkit train` makes it (the digits and "not a digit"), trained for two short
    epochs on the synthetic data, saved as .keras.

    Skips (with the reason) on a runtime-only install, where TensorFlow is absent: a Pi has no TensorFlow."""
    if not have_tensorflow():
        pytest.skip("needs TensorFlow (the train extra) to build the Keras test model; runtime-only install")
    return train_tiny_keras(tmp_path_factory.mktemp("tiny_model") / "float.keras", synth_data_dir)


@pytest.fixture(scope="session")
def tiny_digits_keras_model(tmp_path_factory: pytest.TempPathFactory, synth_data_dir: Path) -> Path:
    """A digits-only seed network (10 outputs), two short epochs: the runtime's reading tests use it, because
    two epochs of synthetic data do not teach "not a digit" well enough to leave camera-like digits alone.

    Skips (with the reason) on a runtime-only install, where TensorFlow is absent."""
    if not have_tensorflow():
        pytest.skip("needs TensorFlow (the train extra) to build the Keras test model; runtime-only install")
    return train_tiny_keras(tmp_path_factory.mktemp("tiny_digits_model") / "float.keras", synth_data_dir,
                            not_a_digit=False)


@pytest.fixture(scope="session")
def tiny_int8_tflite(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                     synth_data_dir: Path) -> Path:
    """A full-int8 .tflite (uint8 input, uint8 output) of ``tiny_digits_keras_model``, or the same model built
    on another machine and named by ``$DIGITKIT_TEST_TINY_INT8`` (how the emulated arm64 run gets it)."""
    prebuilt = os.environ.get(PREBUILT_ENV)
    if prebuilt:
        if not Path(prebuilt).is_file():
            pytest.fail(f"${PREBUILT_ENV} names {prebuilt}, which is not a file")
        return Path(prebuilt)
    keras_path = request.getfixturevalue("tiny_digits_keras_model")  # only now: a prebuilt model needs no TF
    return convert_tiny_int8(keras_path, synth_data_dir, tmp_path_factory.mktemp("tiny_tflite") / "tiny_int8.tflite")


@pytest.fixture(scope="session")
def tiny_nad_int8_tflite(tmp_path_factory: pytest.TempPathFactory, tiny_keras_model: Path,
                         synth_data_dir: Path) -> Path:
    """The same for ``tiny_keras_model``: 11 outputs, the last "not a digit", and no metadata beside it."""
    return convert_tiny_int8(tiny_keras_model, synth_data_dir,
                             tmp_path_factory.mktemp("tiny_tflite") / "tiny_nad_int8.tflite")


@pytest.fixture(scope="session")
def real_seed_model(tmp_path_factory: pytest.TempPathFactory, real_data_dir: Path) -> Path:
    """Slow tests only: the default network trained with ``digitkit train``'s defaults on the real data
    (seed-bn, 30 epochs on all 60 000 images: about 8-15 minutes here); its sidecar holds the training figures."""
    from typer.testing import CliRunner

    from digitkit.cli import app

    out = tmp_path_factory.mktemp("real_seed") / "float.keras"
    result = CliRunner().invoke(app, ["train", "--out", str(out), "--data-dir", str(real_data_dir)])
    assert result.exit_code == 0, result.output + result.stderr
    return out


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The shared real MNIST (``$DIGITKIT_DATA`` or ../shared/data/mnist); slow tests skip if absent."""
    path = Path(os.environ.get("DIGITKIT_DATA", REPO.parent / "shared" / "data" / "mnist"))
    if not path.is_dir():
        pytest.skip(f"real MNIST not found at {path}; set DIGITKIT_DATA")
    return path

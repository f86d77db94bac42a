"""Issue 7's data row through the CLI: a folder mixing two MNIST-format datasets' files (their counts
disagree) is refused before any work, with one line naming the files, exit 2. The loader-level check is
test_data.py::test_count_mismatch_two_datasets_mixed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from synth import write_idx_folder
from typer.testing import CliRunner

from digitkit.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def other_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_idx_folder(tmp_path_factory.mktemp("other_mnist"), n_train=500, n_test=200, seed=7)


@pytest.mark.parametrize("swapped, message", [
    ("train-labels-idx1-ubyte.gz", "500 training labels for 1200 images"),
    ("t10k-images-idx3-ubyte.gz", "300 test labels for 200 images"),
])
@pytest.mark.parametrize("verb", ["evaluate", "train"])
def test_a_folder_mixing_two_datasets_is_refused_in_one_line(tmp_path: Path, synth_data_dir: Path,
                                                             other_dataset: Path, tiny_int8_tflite: Path,
                                                             swapped: str, message: str, verb: str) -> None:
    mixed = tmp_path / "mixed"
    shutil.copytree(synth_data_dir, mixed)
    shutil.copy(other_dataset / swapped, mixed / swapped)
    args = {"evaluate": ["evaluate", str(tiny_int8_tflite), "--data-dir", str(mixed)],
            "train": ["train", "--out", str(tmp_path / "m.keras"), "--data-dir", str(mixed), "--epochs", "1"]}[verb]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "counts must match" in lines[0]
    assert not (tmp_path / "m.keras").exists()

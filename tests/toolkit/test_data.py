"""The data layer: every bad input gives one clear DataError naming the file; good inputs load exactly."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
from synth import idx_bytes, synth_digits, write_idx_folder

from digitkit.toolkit.data import (
    ENV_VAR,
    load_mnist,
    load_npz,
    read_idx,
    split_validation,
)
from digitkit.toolkit.errors import DataError


@pytest.fixture()
def data_copy(tmp_path: Path, synth_data_dir: Path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(synth_data_dir, dst)
    return dst


def test_loads_gzip_idx_folder(synth_data_dir: Path, synth_test_arrays: tuple[np.ndarray, np.ndarray]) -> None:
    data = load_mnist(synth_data_dir)
    assert data.x_train.shape == (1200, 28, 28) and data.x_train.dtype == np.uint8
    assert data.x_test.shape == (300, 28, 28)
    np.testing.assert_array_equal(data.x_test, synth_test_arrays[0])
    np.testing.assert_array_equal(data.y_test, synth_test_arrays[1])
    assert len(data.sha256) == 64


def test_loading_closes_every_file_it_opened(synth_data_dir: Path, tmp_path: Path) -> None:
    # A GzipFile made on a file object leaves that file open: each load used to leave four for the collector
    # (a ResourceWarning each under `python -W always`).
    import gc
    import warnings

    raw = write_idx_folder(tmp_path / "raw", compress=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for folder in (synth_data_dir, raw):
            load_mnist(folder)
            gc.collect()
    assert not [w for w in seen if issubclass(w.category, ResourceWarning)], [str(w.message) for w in seen]


def test_loads_raw_idx_and_npz_identically(tmp_path: Path, synth_data_dir: Path) -> None:
    raw = write_idx_folder(tmp_path / "raw", compress=False)
    a, b = load_mnist(synth_data_dir), load_mnist(raw)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    npz = tmp_path / "mnist.npz"
    np.savez(npz, x_train=a.x_train, y_train=a.y_train, x_test=a.x_test, y_test=a.y_test)
    c = load_npz(npz)
    np.testing.assert_array_equal(a.y_test, c.y_test)
    np.testing.assert_array_equal(load_mnist(tmp_path / "mnist.npz").x_train, a.x_train)


def test_counts_are_not_hard_coded(tmp_path: Path) -> None:
    folder = write_idx_folder(tmp_path / "small", n_train=37, n_test=11)
    data = load_mnist(folder)
    assert (len(data.x_train), len(data.x_test)) == (37, 11)


def test_env_var_is_used_when_no_data_dir(monkeypatch: pytest.MonkeyPatch, synth_data_dir: Path) -> None:
    monkeypatch.setenv(ENV_VAR, str(synth_data_dir))
    assert load_mnist(None).source == str(synth_data_dir)


def test_nothing_found_offline_says_where_it_looked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr("digitkit.toolkit.data.KERAS_CACHE", tmp_path / "nope" / "mnist.npz")
    with pytest.raises(DataError) as err:
        load_mnist(None, allow_download=False)
    msg = str(err.value)
    assert "--data-dir" in msg and ENV_VAR in msg and "mnist.npz" in msg and err.value.exit_code == 2


def test_missing_file(data_copy: Path) -> None:
    (data_copy / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        load_mnist(data_copy)


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is empty"):
        load_mnist(tmp_path / "empty")


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_mnist(tmp_path / "absent")


def test_truncated_gzip(data_copy: Path) -> None:
    path = data_copy / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: corrupt or truncated gzip"):
        load_mnist(data_copy)


def test_truncated_data(data_copy: Path) -> None:
    path = data_copy / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: truncated"):
        load_mnist(data_copy)


def test_wrong_magic(data_copy: Path) -> None:
    path = data_copy / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[2] = 0x0D  # float32 type code
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz: wrong magic number"):
        load_mnist(data_copy)


def test_count_mismatch_two_datasets_mixed(tmp_path: Path, data_copy: Path) -> None:
    other = write_idx_folder(tmp_path / "other", n_train=500, n_test=300, seed=7)
    shutil.copy(other / "train-labels-idx1-ubyte.gz", data_copy / "train-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match=r"500 training labels for 1200 images.*counts must match"):
        load_mnist(data_copy)


def test_wrong_image_size(data_copy: Path) -> None:
    x, _ = synth_digits(1200, 0)
    big = np.pad(x, ((0, 0), (2, 2), (2, 2)))
    (data_copy / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(big)))
    with pytest.raises(DataError, match="32x32, the models need 28x28"):
        load_mnist(data_copy)


def test_read_idx_rejects_swapped_files(synth_data_dir: Path) -> None:
    with pytest.raises(DataError, match="has 1 dimensions, expected 3"):
        read_idx(synth_data_dir / "train-labels-idx1-ubyte.gz", 3)


def test_split_is_seeded_stratified_and_disjoint() -> None:
    y = np.repeat(np.arange(10, dtype=np.uint8), 100)
    x = np.arange(1000 * 4, dtype=np.int64).reshape(1000, 2, 2)
    a, b = split_validation(x, y, 0.1, seed=3), split_validation(x, y, 0.1, seed=3)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    assert len(a.y_val) == 100 and np.all(np.bincount(a.y_val, minlength=10) == 10)
    train_ids, val_ids = set(a.x_train[:, 0, 0].tolist()), set(a.x_val[:, 0, 0].tolist())
    assert not train_ids & val_ids and len(train_ids | val_ids) == 1000
    c = split_validation(x, y, 0.1, seed=4)
    assert set(c.x_val[:, 0, 0].tolist()) != val_ids

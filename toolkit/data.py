"""The MNIST data layer: IDX files (gzip or raw) or a Keras ``mnist.npz``, validated, with a seeded split.

Nothing here hard-codes 60 000 or 10 000: any dataset in MNIST's format (Fashion-MNIST too) loads.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitkit.toolkit.errors import DataError

ENV_VAR = "DIGITKIT_DATA"
KERAS_CACHE = Path("~/.keras/datasets/mnist.npz")

# IDX magic: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions.
_IDX_UBYTE = 0x08
# Accepted spellings of the four files (the official names, and the dot variant some mirrors use).
_STEMS = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


@dataclass(frozen=True)
class MnistData:
    """A loaded dataset: uint8 images (N, H, W), uint8 labels (N,), and where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    sha256: str

    @property
    def image_shape(self) -> tuple[int, int]:
        return (int(self.x_train.shape[1]), int(self.x_train.shape[2]))

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(initial=0), self.y_test.max(initial=0))) + 1


@dataclass(frozen=True)
class Split:
    """A training split and the validation split carved from it (the test set is not in here)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt or truncated gzip ({exc}); re-download the file") from None
    return raw


def read_idx(path: str | os.PathLike[str], ndim: int) -> np.ndarray:
    """Read one IDX file of unsigned bytes with ``ndim`` dimensions, validating its header.

    Raises:
        DataError: unreadable, wrong magic, wrong number of dimensions, or truncated.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"{path}: file is too short to be an IDX file ({len(raw)} bytes)")
    zero, dtype_code, dims = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != _IDX_UBYTE:
        raise DataError(
            f"{path}: wrong magic number 0x{raw[:4].hex()} (expected 0x0000080{ndim}); "
            "not an MNIST-format IDX file"
        )
    if dims != ndim:
        raise DataError(f"{path}: has {dims} dimensions, expected {ndim} (is it the images/labels file swapped?)")
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DataError(f"{path}: truncated header")
    shape = struct.unpack(">" + "I" * dims, raw[4:header])
    expected = int(np.prod(shape, dtype=np.int64))
    body = len(raw) - header
    if body < expected:
        raise DataError(f"{path}: truncated: header says {shape} = {expected} bytes of data, found {body}")
    if body > expected:
        raise DataError(f"{path}: {body - expected} trailing bytes after the {shape} data; file is damaged")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(folder: Path, key: str) -> Path:
    for stem in _STEMS[key]:
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                return folder / name
    names = " or ".join(s + "[.gz]" for s in _STEMS[key])
    raise DataError(f"{folder}: missing {names}; point --data-dir at a folder with the four MNIST IDX files")


def _checksum(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for p in paths:
        digest.update(p.read_bytes())
    return digest.hexdigest()


def _validate(x: np.ndarray, y: np.ndarray, what: str, x_name: str, y_name: str) -> None:
    if x.ndim != 3 or x.shape[0] == 0 or x.shape[1] < 8 or x.shape[2] < 8:
        raise DataError(f"{x_name}: {what} images have shape {x.shape}; expected (N, 28, 28) with N > 0")
    if x.shape[1:] != (28, 28):
        raise DataError(f"{x_name}: {what} images are {x.shape[1]}x{x.shape[2]}, the models need 28x28")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise DataError(
            f"{y_name}: {y.shape[0]} {what} labels for {x.shape[0]} images in {x_name}; "
            "the counts must match (are the files from two different datasets?)"
        )
    if y.size and int(y.max()) > 9:
        raise DataError(f"{y_name}: label {int(y.max())} is out of range 0-9")


def load_idx_folder(folder: str | os.PathLike[str]) -> MnistData:
    """Load the four MNIST IDX files from ``folder`` (gzip or raw)."""
    folder = Path(folder)
    paths = {key: _find(folder, key) for key in _STEMS}
    x_train = read_idx(paths["train_images"], 3)
    y_train = read_idx(paths["train_labels"], 1)
    x_test = read_idx(paths["test_images"], 3)
    y_test = read_idx(paths["test_labels"], 1)
    _validate(x_train, y_train, "training", paths["train_images"].name, paths["train_labels"].name)
    _validate(x_test, y_test, "test", paths["test_images"].name, paths["test_labels"].name)
    return MnistData(x_train, y_train, x_test, y_test, str(folder), _checksum(list(paths.values())))


def load_npz(path: str | os.PathLike[str]) -> MnistData:
    """Load a Keras-style ``mnist.npz`` (keys x_train, y_train, x_test, y_test)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k]) for k in ("x_train", "y_train", "x_test", "y_test")}
    except KeyError as exc:
        raise DataError(f"{path}: missing array {exc}; expected x_train, y_train, x_test, y_test") from None
    except (OSError, ValueError, zlib.error) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    for k, v in arrays.items():
        if v.dtype != np.uint8:
            if not np.issubdtype(v.dtype, np.integer) or v.min(initial=0) < 0 or v.max(initial=0) > 255:
                raise DataError(f"{path}: {k} has dtype {v.dtype}; expected uint8 pixels and labels")
            arrays[k] = v.astype(np.uint8)
    _validate(arrays["x_train"], arrays["y_train"], "training", f"{path}[x_train]", f"{path}[y_train]")
    _validate(arrays["x_test"], arrays["y_test"], "test", f"{path}[x_test]", f"{path}[y_test]")
    return MnistData(**arrays, source=str(path), sha256=_checksum([path]))


def load_path(path: str | os.PathLike[str]) -> MnistData:
    """Load from a folder of IDX files, a folder holding ``mnist.npz``, or an ``.npz`` file."""
    path = Path(path).expanduser()
    if path.is_file():
        return load_npz(path)
    if not path.exists():
        raise DataError(f"data path {path} does not exist; pass --data-dir DIR or set ${ENV_VAR}")
    if not path.is_dir():
        raise DataError(f"data path {path} is neither a folder nor an .npz file")
    if not any(path.iterdir()):
        raise DataError(f"data folder {path} is empty; it needs the four MNIST IDX files or mnist.npz")
    if (path / "mnist.npz").is_file() and not any((path / (s + ".gz")).exists() for s in _STEMS["train_images"]):
        return load_npz(path / "mnist.npz")
    return load_idx_folder(path)


def load_mnist(data_dir: str | os.PathLike[str] | None = None, allow_download: bool = True) -> MnistData:
    """Find and load MNIST: ``data_dir``, then ``$DIGITKIT_DATA``, then the Keras cache, then the download.

    Raises:
        DataError: nothing found (the message says where it looked and how to point at the data), or
        the files found are invalid.
    """
    if data_dir is not None and str(data_dir) != "":
        return load_path(data_dir)
    env = os.environ.get(ENV_VAR)
    if env:
        return load_path(env)
    cache = KERAS_CACHE.expanduser()
    if cache.is_file():
        return load_npz(cache)
    looked = f"--data-dir (not given), ${ENV_VAR} (not set), {cache} (absent)"
    if allow_download:
        try:
            import keras  # lazily: the download is the last resort and needs the train extra

            # Keras prints "Downloading data from ..." and its progress bar on stdout, which must carry only
            # the promised output (JSON under --json): send them to stderr.
            with contextlib.redirect_stdout(sys.stderr):
                keras.datasets.mnist.load_data()
        except Exception as exc:  # offline, no keras, server refused: all mean the same to the user
            reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
            raise DataError(
                f"no MNIST data found; looked at {looked}, and the Keras download failed "
                f"({reason}); pass --data-dir DIR with the four IDX files or set ${ENV_VAR}"
            ) from None
        if cache.is_file():
            return load_npz(cache)
    raise DataError(f"no MNIST data found; looked at {looked}; pass --data-dir DIR or set ${ENV_VAR}")


def split_validation(x: np.ndarray, y: np.ndarray, fraction: float = 0.1, seed: int = 0) -> Split:
    """Carve a seeded, class-stratified validation split from the training set.

    The test set never takes part in early stopping or model selection; it is only for final reporting.
    """
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"validation fraction {fraction} must be in [0, 1)")
    rng = np.random.default_rng(seed)
    val_idx: list[np.ndarray] = []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        val_idx.append(idx[: int(round(len(idx) * fraction))])
    val = np.sort(np.concatenate(val_idx)) if val_idx else np.array([], dtype=np.int64)
    mask = np.ones(len(y), dtype=bool)
    mask[val] = False
    train = np.flatnonzero(mask)
    rng.shuffle(train)
    return Split(x[train], y[train], x[val], y[val])

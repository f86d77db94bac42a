"""The MNIST data layer: IDX files (gzip or raw) or a Keras ``mnist.npz``, validated, with a seeded split.

Nothing here hard-codes 60 000 or 10 000: any dataset in MNIST's format (Fashion-MNIST too) loads.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import math
import os
import struct
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

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


# Deflate cannot expand data more than ~1032:1, so a gzip file of C bytes holds at most this many times C:
# a header claiming more is lying, and is refused before anything is allocated.
_GZIP_MAX_RATIO = 1032


def _open_idx(path: Path) -> tuple[BinaryIO, int]:
    """``path`` opened for reading (through gzip when it starts with the gzip magic) and its size on disk."""
    try:
        fh: BinaryIO = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
        size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if fh.read(2) == b"\x1f\x8b":  # gzip magic, whatever the file is called
        fh.close()  # a GzipFile given a file object never closes it: let it open (and close) its own
        try:
            return gzip.open(path, "rb"), size  # type: ignore[return-value]
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    fh.seek(0)
    return fh, size


def _read_exactly(fh: BinaryIO, n: int, path: Path) -> bytes:
    return _read_into(fh, np.empty(n, np.uint8), path).tobytes()


def _read_into(fh: BinaryIO, buf: np.ndarray, path: Path) -> np.ndarray:
    """Fill ``buf`` from ``fh`` (fewer bytes at the end of the file); return the filled part, no copy."""
    view, got = memoryview(buf), 0
    try:
        while got < len(buf):
            n = fh.readinto(view[got:])  # type: ignore[attr-defined]
            if not n:
                break
            got += n
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip ({exc}); re-download the file") from None
    return buf[:got]


def read_idx(path: str | os.PathLike[str], ndim: int) -> np.ndarray:
    """Read one IDX file of unsigned bytes with ``ndim`` dimensions, validating its header.

    The header is read and checked first; then exactly the bytes it claims (plus one, to catch trailing
    data) are decompressed into one array, so a gzip bomb or a header claiming 2^64 bytes costs nothing.

    Raises:
        DataError: unreadable, wrong magic, wrong number of dimensions, a size no file of this length can
        hold, truncated, or trailing bytes.
    """
    path = Path(path)
    stream, disk_size = _open_idx(path)
    with stream:
        head = _read_exactly(stream, 4, path)
        if len(head) < 4:
            raise DataError(f"{path}: file is too short to be an IDX file ({len(head)} bytes)")
        zero, dtype_code, dims = struct.unpack(">HBB", head)
        if zero != 0 or dtype_code != _IDX_UBYTE:
            raise DataError(
                f"{path}: wrong magic number 0x{head.hex()} (expected 0x0000080{ndim}); "
                "not an MNIST-format IDX file"
            )
        if dims != ndim:
            raise DataError(f"{path}: has {dims} dimensions, expected {ndim} (is it the images/labels file swapped?)")
        raw_shape = _read_exactly(stream, 4 * dims, path)
        if len(raw_shape) < 4 * dims:
            raise DataError(f"{path}: truncated header")
        shape = struct.unpack(">" + "I" * dims, raw_shape)
        expected = math.prod(shape)  # Python ints: (2^31, 2^31, 4) is 2^64, not an int64 overflow to 0
        gz = isinstance(stream, gzip.GzipFile)
        most = disk_size * _GZIP_MAX_RATIO if gz else disk_size - 4 - 4 * dims
        if expected > most:
            found = "a gzip file of" if gz else "the file has"
            raise DataError(f"{path}: truncated or damaged: header says {shape} = {expected} bytes of data, but "
                            f"{found} {disk_size} bytes {'can hold at most ' + str(most) if gz else 'in all'}; "
                            "re-download the file")
        # One allocation of the claimed size (plus one byte, to catch trailing data), filled in place.
        body = _read_into(stream, np.empty(expected + 1, np.uint8), path)
    if len(body) < expected:
        raise DataError(f"{path}: truncated: header says {shape} = {expected} bytes of data, found {len(body)}")
    if len(body) > expected:
        raise DataError(f"{path}: trailing bytes after the {shape} data; file is damaged")
    return body.reshape(shape)


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


_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _npz_headers(path: Path) -> None:
    """Check each array's .npy header (shape, dtype) against the bytes its member holds, before numpy
    allocates the array: a header claiming (2^36, 28, 28) over a few bytes is refused here, not by a
    MemoryError.

    Raises:
        DataError: a missing key, an unreadable member, or a header no member of that size can satisfy.
    """
    try:
        size = path.stat().st_size
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            for key in _NPZ_KEYS:
                if f"{key}.npy" not in names:
                    raise DataError(f"{path}: missing array '{key}'; expected x_train, y_train, x_test, y_test")
                info = zf.getinfo(f"{key}.npy")
                with zf.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                    elif version == (2, 0):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                    else:
                        raise DataError(f"{path}: {key} is a .npy of version {version}; expected 1.0 or 2.0")
                claimed = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
                # The member can hold no more than its declared size, and that no more than deflate can expand.
                most = min(info.file_size, max(info.compress_size, 1) * _GZIP_MAX_RATIO, size * _GZIP_MAX_RATIO)
                if claimed > most:
                    raise DataError(f"{path}: {key} header says shape {shape} of {dtype} = {claimed} bytes, but its "
                                    f"member holds at most {most}; the file is damaged")
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None


def load_npz(path: str | os.PathLike[str]) -> MnistData:
    """Load a Keras-style ``mnist.npz`` (keys x_train, y_train, x_test, y_test), headers checked first."""
    path = Path(path)
    _npz_headers(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k]) for k in _NPZ_KEYS}
    except KeyError as exc:
        raise DataError(f"{path}: missing array {exc}; expected x_train, y_train, x_test, y_test") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
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

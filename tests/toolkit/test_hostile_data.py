"""Issue 15, data folders (rows 7 and 8): a gzip bomb, IDX and npz headers claiming impossible sizes, and
``evaluate --json`` on a test set missing a class. Each through the real verb: exit code, one ``error:``
line (or valid JSON), and for the bomb, the peak memory of the process."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from synth import idx_bytes
from typer.testing import CliRunner

from digitkit.cli import app
from digitkit.toolkit.data import load_mnist

runner = CliRunner()
DIGITKIT = str(Path(sys.executable).parent / "digitkit")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
_PEAK_RSS = """
import os, sys
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss, os.waitstatus_to_exitcode(status), file=sys.stderr)
"""


@pytest.fixture()
def data_copy(tmp_path: Path, synth_data_dir: Path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(synth_data_dir, dst)
    return dst


def _evaluate(model: Path, data: Path, *extra: str) -> tuple[int, str, str]:
    res = runner.invoke(app, ["evaluate", str(model), "--data-dir", str(data), *extra])
    return res.exit_code, res.stdout, res.stderr


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def test_a_gzip_bomb_is_read_no_further_than_its_header_claims(tiny_int8_tflite: Path, data_copy: Path) -> None:
    """A 260 KB .gz that inflates to 256 MiB of zeros after a valid (1200, 28, 28) header."""
    bomb = data_copy / "train-images-idx3-ubyte.gz"
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip member
    parts = [comp.compress(struct.pack(">HBBIII", 0, 8, 3, 1200, 28, 28))]
    zeros = bytes(1 << 20)
    parts += [comp.compress(zeros) for _ in range(256)]
    bomb.write_bytes(b"".join(parts) + comp.flush())
    assert bomb.stat().st_size < 400_000
    cmd = [DIGITKIT, "evaluate", str(tiny_int8_tflite), "--data-dir", str(data_copy), "--json"]
    res = subprocess.run([sys.executable, "-c", _PEAK_RSS, *cmd], env=ENV, capture_output=True, text=True, timeout=300)
    err, rss_kib, code = res.stderr.rsplit(None, 2)
    assert int(code) == 2 and res.stdout == ""
    assert _one_error_line(err) == f"error: {bomb}: trailing bytes after the (1200, 28, 28) data; file is damaged"
    # 256 MiB were never inflated into memory (the whole-file decompress peaked at 2 x the bomb's size)
    assert int(rss_kib) / 1024 < 200, rss_kib


@pytest.mark.parametrize("gz", [False, True])
def test_an_idx_header_claiming_2_to_the_64_bytes_is_refused_before_allocation(tiny_int8_tflite: Path,
                                                                              data_copy: Path, gz: bool) -> None:
    for name in ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"):
        (data_copy / name).unlink(missing_ok=True)
    header = struct.pack(">HBBIII", 0, 8, 3, 2**31, 2**31, 4)  # 2^64 bytes: int64 arithmetic wraps to 0
    path = data_copy / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(header) if gz else header)
    code, out, err = _evaluate(tiny_int8_tflite, data_copy, "--json")
    assert code == 2 and out == ""
    line = _one_error_line(err)
    size = path.stat().st_size
    assert line.startswith(f"error: {path}: truncated or damaged: header says (2147483648, 2147483648, 4) = "
                           f"{2**64} bytes of data, but ")
    assert (f"a gzip file of {size} bytes can hold at most {size * 1032}" if gz else
            f"the file has {size} bytes in all") in line and line.endswith("re-download the file")


def _npy(shape: tuple[int, ...], body: bytes) -> bytes:
    """A .npy of uint8 claiming ``shape`` followed by ``body`` (whatever its real length)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return buf.getvalue() + body


def test_an_npz_header_claiming_2_to_the_36_images_is_refused_before_allocation(tiny_int8_tflite: Path,
                                                                               synth_data_dir: Path,
                                                                               tmp_path: Path) -> None:
    data = load_mnist(synth_data_dir)
    npz = tmp_path / "mnist.npz"
    with zipfile.ZipFile(npz, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x_train.npy", _npy((2**36, 28, 28), data.x_train[:10].tobytes()))
        for key in ("y_train", "x_test", "y_test"):
            buf = io.BytesIO()
            np.save(buf, getattr(data, key))
            zf.writestr(f"{key}.npy", buf.getvalue())
    member = zipfile.ZipFile(npz).getinfo("x_train.npy").file_size
    code, out, err = _evaluate(tiny_int8_tflite, npz, "--json")
    assert code == 2 and out == ""
    assert _one_error_line(err) == (f"error: {npz}: x_train header says shape (68719476736, 28, 28) of uint8 = "
                                    f"{2**36 * 784} bytes, but its member holds at most {member}; the file is damaged")


def test_evaluate_json_is_strict_json_when_a_class_is_absent(tiny_int8_tflite: Path, data_copy: Path) -> None:
    test_images = data_copy / "t10k-images-idx3-ubyte.gz"
    test_labels = data_copy / "t10k-labels-idx1-ubyte.gz"
    data = load_mnist(data_copy)
    keep = data.y_test != 9
    test_images.write_bytes(gzip.compress(idx_bytes(data.x_test[keep])))
    test_labels.write_bytes(gzip.compress(idx_bytes(data.y_test[keep])))
    code, out, err = _evaluate(tiny_int8_tflite, data_copy, "--json")
    assert code == 0, err

    def no_constants(name: str) -> None:
        raise AssertionError(f"{name} in --json output")

    result = json.loads(out, parse_constant=no_constants)  # NaN/Infinity are not JSON
    assert result["per_class_accuracy"][9] is None and result["confusion"][9] == [0] * 10
    assert all(isinstance(a, float) for a in result["per_class_accuracy"][:9])
    assert result["test_size"] == int(keep.sum())
    code, table, _ = _evaluate(tiny_int8_tflite, data_copy)  # and the table prints "-" for it
    assert code == 0 and "nan" not in table.lower()

"""``digitkit convert``: success output, the gate's exit 3, and every bad input's one line + exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_MAX_DROP
from typer.testing import CliRunner

from digitkit.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["convert", *[str(a) for a in args]])


def test_convert_json_success(tiny_keras_model: Path, synth_data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.tflite"
    result = run(tiny_keras_model, "--out", out, "--data-dir", synth_data_dir, "--max-drop", TINY_MAX_DROP, "--json")
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(result.stdout)
    assert report["passed"] and report["mode"] == "int8" and report["float_ops"] == 0
    assert report["compression_ratio"] < 0.3 and 0 <= report["agreement"] <= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite", "m.tflite.json"]


def test_convert_table_and_debug_layers(tiny_keras_model: Path, synth_data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.tflite"
    result = run(tiny_keras_model, "--out", out, "--data-dir", synth_data_dir, "--max-drop", TINY_MAX_DROP,
                 "--debug-layers")
    assert result.exit_code == 0, result.output + result.stderr
    assert "gate passed" in result.stdout and "per-layer int8 error" in result.stdout
    layers = json.loads((tmp_path / "m.layers.json").read_text())["layers"]
    assert [layer["op"] for layer in layers][:2] == ["CONV_2D", "MAX_POOL_2D"]
    assert {"FULLY_CONNECTED", "SOFTMAX"} <= {layer["op"] for layer in layers}
    assert all(layer["rmse"] >= 0 and layer["scale"] > 0 and layer["layer"] for layer in layers)
    # the conv layers' errors are real, non-zero, and within a few quantization steps
    assert all(0 < layer["rmse_per_scale"] < 5 for layer in layers if layer["op"] == "CONV_2D")


def test_gate_failure_exits_3_and_writes_nothing(tiny_keras_model: Path, synth_data_dir: Path,
                                                 tmp_path: Path) -> None:
    # A converted model cannot gain 100 pp, so --max-drop -100 fails the real drop comparison.
    out = tmp_path / "m.tflite"
    result = run(tiny_keras_model, "--out", out, "--data-dir", synth_data_dir, "--max-drop", "-100")
    assert result.exit_code == 3, result.output + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: int8 model lost")
    assert "more than --max-drop -100 pp" in lines[0] and "nothing written" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_keep_rejected_keeps_it_under_a_name_that_says_so(tiny_keras_model: Path, synth_data_dir: Path,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "m.tflite"
    result = run(tiny_keras_model, "--out", out, "--data-dir", synth_data_dir, "--max-drop", "-100",
                 "--keep-rejected")
    assert result.exit_code == 3
    assert "kept as" in result.stderr and "m.rejected.tflite" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.rejected.tflite", "m.rejected.tflite.json"]
    side = json.loads((tmp_path / "m.rejected.tflite.json").read_text())
    assert side["report"]["passed"] is False and side["report"]["rejected_path"].endswith("m.rejected.tflite")


def _bad(tmp_path: Path, *args: object, message: str) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    before = {p.name for p in tmp_path.iterdir()}
    result = run(*args, "--out", out_dir / "m.tflite") if "--out" not in args else run(*args)
    assert result.exit_code == 2, result.output + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert list(out_dir.iterdir()) == [] and {p.name for p in tmp_path.iterdir()} == before


def test_missing_model(tmp_path: Path, synth_data_dir: Path) -> None:
    _bad(tmp_path, tmp_path / "nope.keras", "--data-dir", synth_data_dir, message="nope.keras not found")


def test_random_bytes_are_not_a_keras_model(tmp_path: Path, synth_data_dir: Path) -> None:
    model = tmp_path / "random.keras"
    model.write_bytes(os.urandom(4096))
    _bad(tmp_path, model, "--data-dir", synth_data_dir, message="not a readable Keras model")


def test_text_file_named_keras(tmp_path: Path, synth_data_dir: Path) -> None:
    model = tmp_path / "notes.keras"
    model.write_text("this is not a model\n")
    _bad(tmp_path, model, "--data-dir", synth_data_dir, message="not a readable Keras model")


def test_wrong_input_shape(tmp_path: Path, synth_data_dir: Path, wrong_shape_keras: Path) -> None:
    _bad(tmp_path, wrong_shape_keras, "--data-dir", synth_data_dir, message="model input is (32, 32, 1)")


def test_calibration_samples_zero(tmp_path: Path, tiny_keras_model: Path, synth_data_dir: Path) -> None:
    _bad(tmp_path, tiny_keras_model, "--data-dir", synth_data_dir, "--calibration-samples", "0",
         message="--calibration-samples 0 must be at least 1")


def test_empty_calibration_set(tmp_path: Path, tiny_keras_model: Path, empty_train_data_dir: Path) -> None:
    # The data layer refuses a training set of zero images before a calibration set can be drawn from it.
    _bad(tmp_path, tiny_keras_model, "--data-dir", empty_train_data_dir,
         message="training images have shape (0, 28, 28)")


def test_unwritable_out_folder(tmp_path: Path, tiny_keras_model: Path, synth_data_dir: Path,
                               unwritable_dir: Path) -> None:
    _bad(tmp_path, tiny_keras_model, "--data-dir", synth_data_dir, "--out", unwritable_dir / "m.tflite",
         message="is not writable")
    assert not (unwritable_dir / "m.tflite").exists()


@pytest.mark.parametrize(("args", "message"), [
    (("--mode", "int4"), "--mode 'int4' is not one of"),
    (("--mode", "float16", "--io", "uint8"), "--io uint8 needs --mode int8"),
])
def test_bad_options(tmp_path: Path, tiny_keras_model: Path, args: tuple[str, ...], message: str) -> None:
    _bad(tmp_path, tiny_keras_model, *args, message=message)


def test_out_must_be_tflite(tmp_path: Path, tiny_keras_model: Path) -> None:
    _bad(tmp_path, tiny_keras_model, "--out", tmp_path / "out" / "m.onnx", message="must end in .tflite")


def test_console_script_subprocess(tiny_keras_model: Path, synth_data_dir: Path, tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "digitkit"
    out = tmp_path / "f32.tflite"
    proc = subprocess.run([str(exe), "convert", str(tiny_keras_model), "--out", str(out), "--mode", "float32",
                           "--data-dir", str(synth_data_dir), "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["mode"] == "float32" and report["compression_ratio"] == 1.0 and report["agreement"] >= 0.99
    assert "Saved artifact" not in proc.stdout + proc.stderr  # TensorFlow's chatter stays out of the output
    assert out.is_file()

"""The library: every mode converts, int8 is integer-only, the report's invariants, the sidecar, the gate."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_MAX_DROP
from plain_litert import probabilities, read_accuracy

from digitkit.converters import ConversionError, ConversionReport, ConvertConfig, GateFailed
from digitkit.converters.data import balanced_sample
from digitkit.converters.flatbuffer import FLOAT_TYPES, float_ops, read_io, read_ops
from digitkit.runtime.interpreter import ModelMetadata, TFLiteModel, read_embedded
from digitkit.toolkit.convert import conversion_data, convert

# Each mode's size relative to the float32 .tflite: int8 stores 1-byte weights (the bar is 27 %).
MAX_RATIO = {"int8": 0.30, "dynamic": 0.30, "float16": 0.55, "float32": 1.0}


def _check_invariants(report: ConversionReport, path: Path) -> None:
    assert 0.0 <= report.agreement <= 1.0
    assert 0.0 <= report.float_accuracy <= 1.0 and 0.0 <= report.converted_accuracy <= 1.0
    assert report.drop_pp == pytest.approx((report.float_accuracy - report.converted_accuracy) * 100, abs=1e-6)
    # Two models that agree on a share a of images cannot differ in accuracy by more than 1 - a.
    assert abs(report.float_accuracy - report.converted_accuracy) <= 1 - report.agreement + 1e-9
    assert report.passed and report.drop_pp <= TINY_MAX_DROP
    assert report.size_bytes == path.stat().st_size
    assert report.compression_ratio == pytest.approx(report.size_bytes / report.float32_tflite_bytes)
    assert report.compression_ratio <= MAX_RATIO[report.mode]
    assert report.test_size == 300
    assert report.conversion_seconds > 0


@pytest.mark.parametrize("mode", ["int8", "dynamic", "float16", "float32"])
def test_every_mode_converts_and_runs_in_the_runtime(converted, synth_test_arrays, mode: str) -> None:
    report, path = converted(mode)
    _check_invariants(report, path)
    x, y = synth_test_arrays
    accuracy = float(np.mean(TFLiteModel(path).predict(x) == y))
    assert accuracy == pytest.approx(report.converted_accuracy)
    assert accuracy > 0.8  # the tiny model learned the synthetic digits; a broken conversion would not
    if mode in ("float32", "float16"):
        assert report.agreement >= 0.99


def test_int8_is_integer_only_with_raw_pixel_input(converted) -> None:
    report, path = converted("int8")
    ops = read_ops(path.read_bytes())
    floats = [(op.op, t.name, t.dtype) for op in ops for t in (*op.inputs, *op.outputs) if t.dtype in FLOAT_TYPES]
    assert floats == []
    assert report.float_ops == 0 and report.calibration_samples == 500
    assert {"CONV_2D", "FULLY_CONNECTED"} <= set(report.op_counts)
    io = read_io(path.read_bytes())
    # uint8 input takes raw 0-255 pixels: scale 1/255, zero point 0, so the device does no float work.
    assert (io.input_dtype, io.output_dtype) == ("UINT8", "UINT8")
    assert io.input_scale == pytest.approx(1 / 255, rel=1e-3) and io.input_zero_point == 0


def test_int8_graph_rewrite_is_the_same_function_and_leaves_no_dynamic_shape_ops(converted, tiny_keras_model: Path,
                                                                                synth_test_arrays) -> None:
    """The int8-only rewrite (digitkit.converters.tflite.int8_graph): first conv via SPACE_TO_DEPTH, static Flatten."""
    from digitkit.converters.tflite import int8_graph, load_keras, space_to_depth_kernel, to_float

    model = load_keras(tiny_keras_model)
    rewritten = int8_graph(model)
    x = to_float(synth_test_arrays[0][:64])
    np.testing.assert_allclose(np.asarray(rewritten(x)), np.asarray(model(x)), atol=1e-5)
    assert rewritten is not model and len(model.layers) == 11  # the source model is untouched
    # Every filter's taps land once in the rearranged kernel: same values, so same per-channel int8 scales.
    kernel = np.random.default_rng(0).normal(size=(5, 5, 1, 16)).astype(np.float32)
    big = space_to_depth_kernel(kernel)
    assert big.shape == (3, 3, 4, 64)
    for pos in range(4):
        block = big[..., pos * 16:(pos + 1) * 16]
        assert np.count_nonzero(block) == kernel.size
        np.testing.assert_array_equal(np.abs(block).max(axis=(0, 1, 2)), np.abs(kernel).max(axis=(0, 1, 2)))

    report, _ = converted("int8")
    assert {"SPACE_TO_DEPTH", "DEPTH_TO_SPACE"} <= set(report.op_counts)
    assert not {"SHAPE", "STRIDED_SLICE", "PACK"} & set(report.op_counts)
    float_report, _ = converted("float32")  # float32 keeps the Keras graph as it is
    assert "SPACE_TO_DEPTH" not in float_report.op_counts


def test_int8_graph_folds_a_batch_norm_after_the_first_conv_and_still_rewrites_it(synth_test_arrays) -> None:
    """seed-bn: conv -> BatchNormalization -> ReLU. The rewrite folds the BN into the conv (trained, non-trivial
    statistics) and still takes the SPACE_TO_DEPTH path; the function is unchanged."""
    import keras

    from digitkit.converters.tflite import int8_graph, to_float
    from digitkit.toolkit.models import build_model

    model = build_model("seed-bn")
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):  # moving statistics as after training
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, n), rng.normal(0, 0.5, n), rng.normal(0, 0.3, n),
                               rng.uniform(0.2, 3, n)])
    rewritten = int8_graph(model)
    names = [lay.name for lay in rewritten.layers]
    assert any(n.endswith("_s2d_in") for n in names)
    def bns(m: keras.Model) -> int:
        return sum(isinstance(lay, keras.layers.BatchNormalization) for lay in m.layers)

    assert (bns(model), bns(rewritten)) == (3, 2)  # the second conv's and the fc's stay (the converter folds them)
    x = to_float(synth_test_arrays[0][:64])
    np.testing.assert_allclose(np.asarray(rewritten(x)), np.asarray(model(x)), atol=1e-5)


def test_seed_bn_converts_to_exactly_the_seed_networks_int8_ops(synth_test_arrays) -> None:
    """Batch norm is a training aid: the int8 file of seed-bn runs the seed network's operators and no more
    (both BNs after the second conv and fc 128 folded by the converter, the first by int8_graph)."""
    from collections import Counter

    from digitkit.converters.flatbuffer import read_ops
    from digitkit.converters.tflite import convert_keras
    from digitkit.toolkit.models import build_model

    ops = Counter(op.op for op in read_ops(convert_keras(build_model("seed-bn"), "int8", io="uint8",
                                                         calibration=synth_test_arrays[0][:32])))
    assert ops == Counter({"QUANTIZE": 2, "SPACE_TO_DEPTH": 1, "CONV_2D": 2, "DEPTH_TO_SPACE": 1, "MAX_POOL_2D": 2,
                           "RESHAPE": 1, "FULLY_CONNECTED": 2, "SOFTMAX": 1})


@pytest.mark.parametrize("io", ["int8", "float32"])
def test_int8_other_io_types(converted, io: str) -> None:
    report, path = converted("int8", io)
    _check_invariants(report, path)
    assert report.input_dtype == io.upper() and report.output_dtype == io.upper()
    # float io: only the boundary QUANTIZE/DEQUANTIZE touch float; every compute op is integer.
    ops = read_ops(path.read_bytes())
    assert float_ops(ops, float_io=io == "float32") == []
    if io == "float32":
        assert [op.op for op in float_ops(ops)] == ["QUANTIZE", "DEQUANTIZE"]


def test_float_models_are_flagged_by_the_inspector(converted) -> None:
    _, path = converted("dynamic")
    flagged = {op.op for op in float_ops(read_ops(path.read_bytes()))}
    assert {"CONV_2D", "FULLY_CONNECTED", "SOFTMAX"} <= flagged


def test_sidecar_schema_and_runtime_contract(converted, tiny_keras_model: Path) -> None:
    report, path = converted("int8")
    import hashlib

    side = json.loads(path.with_name(path.name + ".json").read_text())
    assert set(side) == {"model_sha256", "runtime", "report", "provenance"}
    assert side["model_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    # the tiny model has the "not a digit" output: its index and the threshold chosen on validation data
    nad = report.not_a_digit
    want = ModelMetadata(labels=(*map(str, range(10)), "not a digit"), not_a_digit=10,
                         reject_threshold=nad["threshold"])
    assert side["runtime"] == want.to_dict()
    embedded = read_embedded(path.read_bytes())
    assert embedded is not None and ModelMetadata.from_dict(embedded["runtime"]) == want
    assert embedded["conversion"] == {"mode": "int8", "io": "uint8"}
    assert nad["val_digits_kept"] >= nad["keep_target"] == 0.999 and 0 < nad["threshold"] < 1
    assert nad["val_digits"] >= 100 and nad["val_negatives"] >= 20
    assert side["report"] == json.loads(json.dumps(report.to_dict()))
    assert side["report"]["size_bytes"] == path.stat().st_size  # the record's figures are this file's
    prov = side["provenance"]
    assert prov["source_sha256"] == hashlib.sha256(tiny_keras_model.read_bytes()).hexdigest()
    assert prov["calibration_samples"] == 500 and 1060 <= prov["train_split_size"] <= 1100  # 1200 less ~10 %
    assert prov["config"]["mode"] == "int8" and prov["config"]["io"] == "uint8"
    assert {"tensorflow", "keras", "numpy", "ai-edge-litert"} <= set(prov["versions"])
    assert path.stat().st_mode & 0o044  # readable like any file, not mkstemp's 0600


def test_calibration_comes_from_the_training_split_only_balanced_and_seeded(synth_data_dir: Path) -> None:
    from digitkit.toolkit.data import load_mnist, split_validation

    data = load_mnist(synth_data_dir)
    a = conversion_data(data, 100, seed=0)
    b = conversion_data(data, 100, seed=0)
    c = conversion_data(data, 100, seed=1)
    split = split_validation(data.x_train, data.y_train, 0.1, seed=0)
    train_rows = {img.tobytes() for img in split.x_train}
    assert all(img.tobytes() in train_rows for img in a.calibration)
    val_only = {img.tobytes() for img in split.x_val} - train_rows
    assert not any(img.tobytes() in val_only for img in a.calibration)
    assert np.array_equal(a.calibration, b.calibration) and not np.array_equal(a.calibration, c.calibration)
    labels = {img.tobytes(): lab for img, lab in zip(split.x_train, split.y_train, strict=True)}
    counts = np.bincount([labels[img.tobytes()] for img in a.calibration], minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 100


def test_gate_compares_drop_to_max_drop(converted, tiny_keras_model: Path, synth_data_dir: Path,
                                        tmp_path: Path) -> None:
    report, _ = converted("int8")
    at_limit = convert(tiny_keras_model, tmp_path / "ok.tflite", data_dir=str(synth_data_dir),
                       max_drop=report.drop_pp)
    assert at_limit.passed and at_limit.drop_pp == report.drop_pp  # the same seeded conversion
    with pytest.raises(GateFailed) as info:
        convert(tiny_keras_model, tmp_path / "no.tflite", data_dir=str(synth_data_dir),
                max_drop=report.drop_pp - 0.01)
    assert info.value.exit_code == 3 and info.value.report.passed is False
    assert not (tmp_path / "no.tflite").exists() and not (tmp_path / "no.tflite.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.tflite", "ok.tflite.json"]  # no temp file left


def test_a_float_op_in_int8_mode_is_refused(monkeypatch, tiny_keras_model: Path, synth_data_dir: Path,
                                            tmp_path: Path) -> None:
    import digitkit.converters.api as api

    real = api.convert_keras

    def dynamic_instead(model, mode, io="float32", calibration=None):  # what a float fallback looks like
        return real(model, "dynamic" if mode == "int8" else mode, "float32")

    monkeypatch.setattr(api, "convert_keras", dynamic_instead)
    with pytest.raises(ConversionError, match=r"operator\(s\) on float tensors \(CONV_2D#0") as info:
        convert(tiny_keras_model, tmp_path / "m.tflite", data_dir=str(synth_data_dir))
    assert info.value.exit_code == 2 and list(tmp_path.iterdir()) == []


def test_empty_calibration_set_from_arrays(tiny_keras_model: Path, synth_data_dir: Path, tmp_path: Path) -> None:
    from digitkit.toolkit.data import load_mnist

    data = load_mnist(synth_data_dir)
    empty = dataclasses.replace(data, x_train=data.x_train[:0], y_train=data.y_train[:0], source="empty")
    with pytest.raises(ConversionError, match="calibration set is empty"):
        convert(tiny_keras_model, tmp_path / "m.tflite", data=empty)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("overrides", "message"), [
    ({"mode": "int4"}, "--mode 'int4' is not one of"),
    ({"io": "int16"}, "--io 'int16' is not one of"),
    ({"mode": "float16", "io": "uint8"}, "--io uint8 needs --mode int8"),
    ({"calibration_samples": 0}, "--calibration-samples 0 must be at least 1"),
    ({"mode": "dynamic", "debug_layers": True}, "--debug-layers .* needs --mode int8"),
    ({"colour": "blue"}, "unknown conversion setting"),
])
def test_bad_settings_fail_before_any_work(overrides: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match=message) as info:
        convert(tmp_path / "missing.keras", tmp_path / "m.tflite", **overrides)
    assert info.value.exit_code == 2 and list(tmp_path.iterdir()) == []


def test_config_defaults() -> None:
    config = ConvertConfig()
    assert (config.mode, config.resolved_io, config.calibration_samples, config.max_drop) == ("int8", "uint8", 500, 0.3)
    assert ConvertConfig(mode="float16").resolved_io == "float32"
    assert config.to_dict()["io"] == "uint8"


def test_importing_converters_does_not_import_tensorflow() -> None:
    code = ("import sys, digitkit.converters, digitkit.toolkit.cli_convert\n"
            "assert 'tensorflow' not in sys.modules, 'tf imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_balanced_sample() -> None:
    y = np.array([0] * 100 + [1] * 3 + [2] * 100)
    idx = balanced_sample(y, 30, seed=0)
    assert len(idx) == len(set(idx.tolist())) == 30
    counts = np.bincount(y[idx], minlength=3)
    assert counts[1] == 3 and abs(int(counts[0]) - int(counts[2])) <= 1


def test_conversion_holds_out_the_split_training_recorded(synth_data_dir: Path, tmp_path: Path) -> None:
    """`digitkit train --seed 3` splits with seed 3: calibration and the threshold's validation data must use
    that split too (not seed 0), and so must the non-digit tiles."""
    from digitkit.toolkit.convert import training_settings
    from digitkit.toolkit.data import load_mnist, split_validation

    data = load_mnist(synth_data_dir)
    side = tmp_path / "m.keras.json"
    side.write_text(json.dumps({"config": {"seed": 3, "val_fraction": 0.2, "not_a_digit": True}}))
    record = training_settings(tmp_path / "m.keras")
    assert record["seed"] == 3
    cdata = conversion_data(data, 100, record=record)
    split = split_validation(data.x_train, data.y_train, 0.2, seed=3)
    assert cdata.split_seed == 3 and cdata.provenance()["split_seed"] == 3
    assert np.array_equal(cdata.val_digits, split.x_val)
    assert cdata.val_negatives is not None and cdata.calibration_negatives is not None
    assert conversion_data(data, 100, record={"seed": 3, "not_a_digit": False}).val_negatives is None
    assert training_settings(tmp_path / "nothing.keras") == {}  # no record: seed 0, as before


def test_threshold_is_the_lowest_that_keeps_the_share_of_validation_digits() -> None:
    from digitkit.converters.verify import choose_threshold

    rng = np.random.default_rng(0)
    digits = np.concatenate([np.zeros(990), rng.uniform(0.2, 0.9, 10)])  # 1 % look doubtful
    negatives = rng.uniform(0.3, 1.0, 500)
    rej = choose_threshold(digits, negatives, keep=0.995)
    assert rej.val_digits_kept >= 0.995
    lower = rej.threshold - 1 / 256
    assert np.mean(digits < lower) < 0.995  # one step lower would not keep enough
    assert rej.val_negatives_rejected == pytest.approx(np.mean(negatives >= rej.threshold))
    assert {p["threshold"] for p in rej.curve} >= {0.5, rej.threshold}


def test_read_accuracy_is_what_the_runtime_reads(converted, synth_test_arrays) -> None:
    """The report's read accuracy: best digit output, a test digit at or above the threshold an error;
    computed here with LiteRT's interpreter directly, not the project's code."""
    from ai_edge_litert.interpreter import Interpreter

    report, path = converted("int8")
    x, y = synth_test_arrays
    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    want = read_accuracy(probabilities(interp, x), y, report.not_a_digit["threshold"])
    assert report.read_accuracy == pytest.approx(want) and want > 0.8

"""The sequence model's training strips (toolkit/linedata.py), its training and int8 export
(toolkit/linetrain.py), and `digitkit train-lines`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from digitkit.runtime.sequence import FRAMES, LINE_HEIGHT, LINE_WIDTH, MARGIN
from digitkit.toolkit.linedata import MAX_LABELS, make_lines
from tests.synth import synth_digits

runner = CliRunner()


def test_make_lines_labels_digit_strips_and_leaves_non_digit_strips_empty() -> None:
    x, y = synth_digits(200, 3)
    negatives, _ = synth_digits(50, 4)
    negatives = 255 - negatives  # any tiles will do as "not digits" here
    lines = make_lines(x, y, negatives[:, :, :], 300, seed=1, negative_share=0.3, word_share=0.1)
    assert lines.x.shape == (300, LINE_HEIGHT, LINE_WIDTH) and lines.x.dtype == np.uint8
    assert lines.labels.shape == (300, MAX_LABELS)
    assert 0.25 < float(np.mean(lines.lengths == 0)) < 0.55  # 40 % non-digit strips asked for
    assert set(np.unique(lines.lengths)) <= set(range(0, 7)) and lines.lengths.max() >= 5
    for i in np.flatnonzero(lines.lengths)[:50]:
        assert np.all(lines.labels[i, lines.lengths[i]:] == 0)  # padding past the length
    ink = lines.x.any(1)  # every strip has ink, starting at the margin
    assert ink.any(1).all() and np.all(ink.argmax(1) >= MARGIN - 1)
    again = make_lines(x, y, negatives, 300, seed=1, negative_share=0.3, word_share=0.1)
    assert np.array_equal(again.x, lines.x)  # a seed makes the same strips


def test_make_lines_moves_strips_right_by_up_to_shift_columns_and_keeps_their_ink() -> None:
    x, y = synth_digits(200, 3)
    plain = make_lines(x, y, np.zeros((0, 28, 28), np.uint8), 200, seed=2)
    moved = make_lines(x, y, np.zeros((0, 28, 28), np.uint8), 200, seed=2, shift=3)
    start = lambda s: s.any(1).argmax(1)  # noqa: E731 - each strip's first ink column
    offsets = start(moved.x) - start(plain.x)
    assert set(np.unique(offsets)) == {0, 1, 2, 3}  # every offset drawn, none beyond
    assert np.array_equal(moved.labels, plain.labels)  # the same lines, only moved
    for i in range(len(offsets)):
        assert np.array_equal(moved.x[i, :, offsets[i]:], plain.x[i, :, :LINE_WIDTH - offsets[i]])
        assert int(moved.x[i].sum()) == int(plain.x[i].sum())  # no ink pushed off the strip


def test_train_lines_cli_trains_exports_an_integer_model_and_records_it(tmp_path: Path,
                                                                        synth_data_dir: Path) -> None:
    pytest.importorskip("tensorflow")
    from digitkit.cli import app
    from digitkit.runtime.interpreter import load_interpreter_class
    from digitkit.runtime.sequence import SequenceModel

    out, tfl = tmp_path / "lines.keras", tmp_path / "lines_int8.tflite"
    result = runner.invoke(app, ["train-lines", "--out", str(out), "--tflite", str(tfl), "--epochs", "1",
                                 "--lines", "512", "--data-dir", str(synth_data_dir)])
    assert result.exit_code == 0, result.output
    assert "epoch 1/1" in result.output and "int8 model" in result.output
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["config"]["lines"] == 512 and len(record["history"]) == 1
    interp = load_interpreter_class()[1](model_path=str(tfl))
    interp.allocate_tensors()
    assert [t["name"] for t in interp.get_tensor_details() if t["dtype"] == np.float32] == []
    logits = SequenceModel(tfl).logits(np.zeros((2, LINE_HEIGHT, LINE_WIDTH), np.uint8))
    assert logits.shape == (2, FRAMES, 11) and np.isfinite(logits).all()


@pytest.mark.parametrize(("args", "message"), [
    (["--out", "m.h5"], "must end in .keras"),
    (["--tflite", "m.onnx"], "must end in .tflite"),
    (["--epochs", "0"], "Invalid value for '--epochs'"),
    (["--context", "-1"], "Invalid value for '--context'"),
    (["--learning-rate", "0"], "Invalid value for '--learning-rate'"),
    (["--shift", "5"], "Invalid value for '--shift'"),
    (["--init", "m.keras"], "not found"),
])
def test_train_lines_refuses_bad_options_with_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    from digitkit.cli import app

    args = [a if not a.startswith("m.") else str(tmp_path / a) for a in args]
    result = runner.invoke(app, ["train-lines", *args, "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert message in result.output


def test_a_wider_view_starts_from_a_trained_network_as_the_same_function(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    import keras

    from digitkit.toolkit.errors import ToolkitError
    from digitkit.toolkit.linetrain import _start_from, build_line_model

    keras.utils.set_random_seed(3)
    first = build_line_model(keras, context=0)
    x = np.random.default_rng(0).random((3, LINE_HEIGHT, LINE_WIDTH, 1)).astype(np.float32)
    for layer in first.layers:  # moving statistics away from their start, so copying them matters
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([g * 1.5, b + 0.1, m + 0.2, v * 2.0])
    first.save(tmp_path / "first.keras")
    wider = build_line_model(keras, context=2)
    assert len(wider.layers) > len(first.layers)
    _start_from(keras, wider, str(tmp_path / "first.keras"))
    np.testing.assert_allclose(wider.predict(x, verbose=0), first.predict(x, verbose=0), atol=1e-5)
    other = keras.Sequential([keras.Input((LINE_HEIGHT, LINE_WIDTH, 1)), keras.layers.Conv2D(4, 3)])
    other.save(tmp_path / "other.keras")
    with pytest.raises(ToolkitError, match="not a sequence model"):
        _start_from(keras, build_line_model(keras, context=1), str(tmp_path / "other.keras"))

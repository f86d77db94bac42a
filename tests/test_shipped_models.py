"""Slow: the shipped models hold their bars on the 10 000 MNIST test images, measured by code that is not the
project's (the LiteRT interpreter fed raw pixels; both readings must hold the bar: the argmax over every output,
and what the runtime reads — the best digit output, a test digit whose "not a digit" probability reaches the
embedded threshold counting as an error), are fully integer, are at most 27 % of their float32 size, and reject
non-digit pages."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from plain_litert import probabilities, read_accuracy

pytestmark = pytest.mark.slow

MODELS = Path(__file__).resolve().parents[1] / "runtime" / "models"
BARS = {"digitkit_seed_int8.tflite": 0.9955, "digitkit_accurate_int8.tflite": 0.9970}


@pytest.fixture(scope="module")
def mnist_test(real_data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    from digitkit.toolkit.data import load_mnist

    d = load_mnist(real_data_dir)
    return d.x_test, d.y_test


@pytest.mark.parametrize("name", sorted(BARS))
def test_shipped_model_accuracy_integer_and_size(name: str, mnist_test: tuple[np.ndarray, np.ndarray]) -> None:
    from ai_edge_litert.interpreter import Interpreter

    path = MODELS / name
    assert path.is_file(), f"{path} is not shipped"
    interp = Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    assert inp["dtype"] == np.uint8 and out["dtype"] == np.uint8
    floats = [t["name"] for t in interp.get_tensor_details() if t["dtype"] == np.float32]
    assert floats == [], floats  # fully integer: no float32 tensor anywhere
    x, y = mnist_test
    probs = probabilities(interp, x)
    record = json.loads(path.with_name(path.name + ".json").read_text())
    argmax_all = float(np.mean(probs.argmax(1) == y))
    read = read_accuracy(probs, y, record["runtime"]["reject_threshold"])
    assert min(argmax_all, read) >= BARS[name], (name, argmax_all, read)
    assert record["report"]["size_bytes"] == path.stat().st_size
    assert path.stat().st_size <= 0.27 * record["report"]["float32_tflite_bytes"]


def test_pages_of_letters_symbols_and_doodles_report_no_digit_on_95_percent() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from nondigit_pages import run

    res = run(None, 300, seed=11)
    fams = res["by_family"]
    pages = sum(fams[f]["pages"] for f in ("letters", "symbols", "doodles"))
    hit = sum(fams[f]["pages_with_digits"] for f in ("letters", "symbols", "doodles"))
    assert hit / pages <= 0.05, fams

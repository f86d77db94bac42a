"""Slow, real-data checks of ``classify`` with the shipped model: MNIST test PNGs come through unharmed (both
polarities), and generated camera-like photos of test digits are read to the issue's bars."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from digitkit.runtime.classifier import DEFAULT_MODEL, DigitClassifier, expand_paths

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from photos import edit_distance, photo_set  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shipped() -> DigitClassifier:
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"no shipped model at {DEFAULT_MODEL}; run `make model`")
    return DigitClassifier(threads=1)


@pytest.fixture(scope="module")
def mnist_test(real_data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    from digitkit.toolkit.data import load_mnist

    d = load_mnist(real_data_dir)
    return d.x_test, d.y_test


@pytest.mark.parametrize("inverted", [False, True], ids=["mnist-polarity", "black-on-white"])
def test_mnist_pngs_match_the_model_accuracy(shipped: DigitClassifier, mnist_test: tuple[np.ndarray, np.ndarray],
                                             tmp_path: Path, inverted: bool) -> None:
    x, y = mnist_test
    model_acc = float(np.mean(shipped.model.predict(x) == y))
    for i, img in enumerate(x):
        cv2.imwrite(str(tmp_path / f"{i:05d}.png"), 255 - img if inverted else img)
    readings = list(shipped.classify_many(expand_paths([tmp_path])))
    acc = float(np.mean([r.text == str(int(t)) for r, t in zip(readings, y, strict=True)]))
    assert abs(acc - model_acc) <= 0.002, (acc, model_acc)


def test_camera_like_photos_meet_the_bars(shipped: DigitClassifier, mnist_test: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = mnist_test
    exact = dist = total = on_blank = n = 0
    for photo, truth in photo_set(x[1000:], y[1000:], 200, seed=1):  # the measured split, not the dev slice
        text = shipped.classify(photo).text
        n += 1
        exact += text == truth
        dist += edit_distance(text, truth)
        total += len(truth)
        on_blank += len(text) if not truth else 0
    assert on_blank == 0
    assert exact / n >= 0.95
    assert 1 - dist / total >= 0.97

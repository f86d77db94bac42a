"""runtime/resize.py: area shrinking in exact integers and bit-exact bilinear enlarging, so the runtime
gives the same pixels on aarch64 as on x86-64 (``make test-pi`` compares the two)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from digitkit.runtime.resize import enlarge, resize, shrink


def test_shrink_averages_areas_exactly() -> None:
    # 3 -> 2 pixels: each output covers 1.5 inputs: (0 + 90/2) / 1.5 = 30, (90/2 + 180) / 1.5 = 150.
    assert shrink(np.array([[0, 90, 180]], np.uint8), (2, 1)).tolist() == [[30, 150]]
    # Whole factors average blocks; a tie (74.5, 75.5) rounds to the even neighbour.
    img = np.array([[74, 75, 75, 76]], np.uint8)
    assert shrink(img, (2, 1)).tolist() == [[74, 76]]
    assert shrink(img, (1, 1)).tolist() == [[75]]


def test_shrink_stays_within_one_of_opencv_inter_area() -> None:
    rng = np.random.default_rng(0)
    identical = 0
    for _ in range(400):
        ih, iw = (int(v) for v in rng.integers(1, 80, 2))
        w, h = int(rng.integers(1, iw + 1)), int(rng.integers(1, ih + 1))
        shape = (ih, iw, 3) if rng.random() < 0.3 else (ih, iw)
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        got, want = shrink(img, (w, h)), cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        assert got.shape == want.shape and got.dtype == np.uint8
        assert int(np.abs(got.astype(int) - want).max()) <= 1, (img.shape, (w, h))
        identical += np.array_equal(got, want)
    assert identical > 300  # mostly equal: only float rounding at .5 ties separates them


def test_a_flat_picture_stays_flat_and_a_big_one_keeps_its_mean() -> None:
    flat = np.full((480, 640), 201, np.uint8)
    assert (shrink(flat, (237, 178)) == 201).all()
    rng = np.random.default_rng(1)
    big = rng.integers(0, 256, (1201, 1601), dtype=np.uint8)  # odd sizes: every boundary is fractional
    assert abs(float(shrink(big, (733, 550)).mean()) - float(big.mean())) < 0.05


def test_enlarge_is_opencvs_exact_bilinear_and_resize_picks_the_direction() -> None:
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    assert np.array_equal(enlarge(img, (45, 41)), cv2.resize(img, (45, 41), interpolation=cv2.INTER_LINEAR_EXACT))
    assert np.array_equal(resize(img, (15, 10)), shrink(img, (15, 10)))
    assert np.array_equal(resize(img, (60, 40)), enlarge(img, (60, 40)))
    assert resize(img, (60, 10)).shape == (10, 60)  # wider and shorter: shrunk in height, then enlarged
    assert resize(img, (30, 20)) is img


@pytest.mark.parametrize(("image", "size", "message"), [
    (np.zeros((4, 4), np.float32), (2, 2), "needs a uint8 image, got float32"),
    (np.zeros((4, 4), np.uint8), (5, 2), "cannot resize 4x4 to 5x2"),
    (np.zeros((4, 4), np.uint8), (0, 2), "cannot resize 4x4 to 0x2"),
])
def test_shrink_refuses_what_it_cannot_do(image: np.ndarray, size: tuple[int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        shrink(image, size)

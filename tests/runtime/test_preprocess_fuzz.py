"""Fuzz the preprocessing with hypothesis: arrays of any dtype and shape (0-d to 4-d, zero-size, 1x1, thin
strips), NaN/Inf, constant pictures, extreme values, and digit photos cast to odd dtypes and corrupted.

Allowed outcomes: a result that keeps the documented invariants, or an InferenceError with a one-line
message naming the problem. Anything else (an OpenCV assertion, a numpy TypeError, a warning turned into
garbage) is a bug. Example counts come from the hypothesis profile in tests/conftest.py (``ci`` by default,
``HYPOTHESIS_PROFILE=long`` for the long run).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from synth import synth_digits

from digitkit.runtime.classifier import DigitClassifier, Reading
from digitkit.runtime.errors import InferenceError
from digitkit.runtime.preprocess import as_mnist_tile, detect_polarity, ink_map, mnist_normalise, to_gray
from digitkit.runtime.segment import SegmentConfig, find_digits

DTYPES = [np.bool_, np.uint8, np.int8, np.uint16, np.int32, np.int64, np.float16, np.float32, np.float64,
          np.complex128, np.dtype("datetime64[s]")]

shapes = st.one_of(
    hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),  # 0-d, zero-size, odd ranks
    st.tuples(st.integers(1, 80), st.integers(1, 80)),  # gray
    st.tuples(st.integers(1, 40), st.integers(1, 40), st.sampled_from([1, 2, 3, 4, 5])),  # channels
    st.tuples(st.integers(1, 3), st.integers(100, 1000)),  # thin strips, both ways
    st.tuples(st.integers(100, 1000), st.integers(1, 3)),
    st.sampled_from([(28, 28), (28, 28, 1), (28, 28, 3), (1, 1), (1, 1, 3), (0, 28), (28, 0, 3)]),
)


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    """Any array: random elements (NaN, +-Inf, extremes included), or a constant one, maybe a strided view."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(shapes)
    if draw(st.booleans()):
        a = np.full(shape, draw(hnp.from_dtype(dtype)), dtype=dtype)
    else:
        a = draw(hnp.arrays(dtype, shape, elements=hnp.from_dtype(dtype)))
    if a.ndim >= 2 and draw(st.booleans()):  # OpenCV is picky about non-contiguous memory
        a = a[::-1, ::-1] if draw(st.booleans()) else np.swapaxes(a, 0, 1)
    return a


def is_image(a: np.ndarray) -> bool:
    """What to_gray's contract accepts: numbers, (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), not empty."""
    rank_ok = a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3, 4))
    return a.dtype.kind in "buif" and rank_ok and a.size > 0


_DIGITS, _LABELS = synth_digits(40, 23)


@st.composite
def digit_photos(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    """A line of 1-4 synthetic digits on paper, either polarity, any scale, cast to a dtype the way a
    library would hand it over (float 0-1, uint16 0-65535, ...), maybe with NaN/Inf/extreme pixels."""
    n = draw(st.integers(1, 4))
    idx = draw(st.lists(st.integers(0, len(_DIGITS) - 1), min_size=n, max_size=n))
    gap = 8
    strip = np.zeros((28 + 2 * gap, gap + n * (28 + gap)), np.uint8)
    for i, k in enumerate(idx):
        x = gap + i * (28 + gap)
        strip[gap:gap + 28, x:x + 28] = _DIGITS[k]
    scale = draw(st.sampled_from([1.0, 2.0, 3.5, 6.0]))
    strip = cv2.resize(strip, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    paper = draw(st.integers(120, 255))
    pic = paper - strip.astype(np.float64) * (paper - draw(st.integers(0, 60))) / 255.0
    if draw(st.booleans()):
        pic = 255.0 - pic  # chalk on a board
    if draw(st.booleans()):
        pic = np.dstack([pic] * draw(st.sampled_from([3, 4])))
    kind = draw(st.sampled_from(["uint8", "uint16", "float32 0-1", "float64 0-255", "float16 0-1", "int64",
                                 "bool"]))
    a = {"uint8": lambda p: p.astype(np.uint8), "uint16": lambda p: (p * 257).astype(np.uint16),
         "float32 0-1": lambda p: (p / 255).astype(np.float32), "float64 0-255": lambda p: p,
         "float16 0-1": lambda p: (p / 255).astype(np.float16), "int64": lambda p: p.astype(np.int64),
         "bool": lambda p: p > 127}[kind](pic)
    corrupt = draw(st.sampled_from(["none", "nan", "inf", "-inf", "extreme"]))
    if corrupt != "none":
        flat = a.reshape(-1)
        spots = draw(st.lists(st.integers(0, flat.size - 1), min_size=1, max_size=20))
        if a.dtype.kind == "f":
            flat[spots] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "extreme": np.finfo(a.dtype).max}[corrupt]
        elif a.dtype.kind in "iu":
            flat[spots] = np.iinfo(a.dtype).max if corrupt in ("inf", "extreme") else np.iinfo(a.dtype).min
    event(f"photo {kind} {corrupt}")
    return a, n


def _one_line(exc: InferenceError) -> str:
    text = str(exc)
    assert text and "\n" not in text and len(text) < 300, text
    return text


def _inside(box: tuple[int, int, int, int], shape: tuple[int, ...]) -> bool:
    x, y, w, h = box
    return w >= 1 and h >= 1 and x >= 0 and y >= 0 and x + w <= shape[1] and y + h <= shape[0]


# --- to_gray ---

@given(arrays())
def test_to_gray_gives_uint8_gray_of_the_same_size_or_says_not_an_image(a: np.ndarray) -> None:
    if not is_image(a):
        with pytest.raises(InferenceError, match="not an image") as info:
            to_gray(a)
        _one_line(info.value)
        return
    g = to_gray(a)
    assert g.dtype == np.uint8 and g.shape == a.shape[:2] and g.flags.c_contiguous
    if a.dtype == np.uint8 and a.ndim == 2:
        assert np.array_equal(g, a)
    if a.dtype == np.bool_ and g.shape == a.shape:  # a gray mask; colour masks mix their channels
        assert set(np.unique(g)) <= {0, 255}
    if np.array_equal(a, np.broadcast_to(a[:1, :1], a.shape), equal_nan=a.dtype.kind == "f"):
        assert g.min() == g.max()  # a constant picture stays constant


def test_to_gray_non_finite_floats_are_black_or_white_and_do_not_change_the_scale() -> None:
    a = np.array([[0.0, 0.5, 1.0, np.nan, np.inf, -np.inf]], np.float32)
    assert to_gray(a).tolist() == [[0, 127, 255, 0, 255, 0]]
    assert to_gray(np.array([[np.nan, np.inf]], np.float64)).tolist() == [[0, 255]]


# --- ink map, segmentation, tiles ---

gray_images = st.one_of(
    hnp.arrays(np.uint8, st.tuples(st.integers(1, 90), st.integers(1, 90))),
    arrays().filter(is_image).map(to_gray),
)


@given(gray_images, st.sampled_from(["auto", "dark-on-light", "light-on-dark"]), st.integers(0, 255))
def test_ink_map_and_find_digits_keep_their_invariants(gray: np.ndarray, polarity: str, min_contrast: int) -> None:
    m = ink_map(gray, polarity, min_contrast)
    assert m.ink.dtype == np.uint8 and m.ink.shape == gray.shape
    assert m.polarity in ("dark-on-light", "light-on-dark")
    assert polarity == "auto" or m.polarity == polarity
    assert m.threshold >= min_contrast and np.isfinite(m.noise) and m.noise >= 0
    segments = find_digits(m.ink, m.threshold)
    assert len(segments) <= SegmentConfig().max_digits
    for s in segments:
        assert _inside(s.box, gray.shape), (s.box, gray.shape)
        assert s.tile.dtype == np.uint8 and s.tile.shape == (28, 28)
    if gray.min() == gray.max():
        assert segments == []  # a blank page has no digits


@given(hnp.arrays(np.uint8, st.tuples(st.integers(0, 90), st.integers(0, 90))), st.integers(-5, 300))
def test_find_digits_at_any_threshold(ink: np.ndarray, threshold: int) -> None:
    for s in find_digits(ink, threshold):
        assert _inside(s.box, ink.shape) and s.tile.shape == (28, 28) and s.tile.dtype == np.uint8


@given(hnp.arrays(np.uint8, st.tuples(st.integers(0, 120), st.integers(0, 120))))
def test_mnist_normalise_always_gives_a_28x28_tile(ink: np.ndarray) -> None:
    tile = mnist_normalise(ink)
    assert tile.dtype == np.uint8 and tile.shape == (28, 28)
    if not ink.any():
        assert not tile.any()


@given(hnp.arrays(np.uint8, st.tuples(st.integers(1, 60), st.integers(1, 60))), st.integers(0, 255))
def test_as_mnist_tile_is_none_or_a_stretched_tile(gray: np.ndarray, blank_contrast: int) -> None:
    tile = as_mnist_tile(gray, blank_contrast)
    if gray.min() == gray.max():
        assert tile is None
    if tile is not None:
        assert tile.dtype == np.uint8 and tile.shape == gray.shape and tile.max() >= 254


@given(arrays())
def test_gray_only_functions_refuse_anything_else_in_one_line(a: np.ndarray) -> None:
    gray_ok = a.dtype == np.uint8 and a.ndim == 2
    calls = {"ink_map": lambda: ink_map(a), "detect_polarity": lambda: detect_polarity(a),
             "as_mnist_tile": lambda: as_mnist_tile(a), "find_digits": lambda: find_digits(a, 40),
             "mnist_normalise": lambda: mnist_normalise(a)}
    for name, call in calls.items():
        empty_ok = name in ("find_digits", "mnist_normalise")
        if gray_ok and (a.size > 0 or empty_ok):
            call()
        else:
            with pytest.raises(InferenceError, match=f"{name} needs a") as info:
                call()
            _one_line(info.value)


@pytest.mark.parametrize("shape", [(0, 0), (0, 7), (7, 0)])
def test_empty_ink_maps_give_nothing(shape: tuple[int, int]) -> None:
    # Found by the long run: OpenCV's connected components segfault on an empty image (the whole
    # process dies, not just the test), so this is pinned here rather than left to chance.
    ink = np.zeros(shape, np.uint8)
    assert find_digits(ink, 40) == []
    assert not mnist_normalise(ink).any()


# --- the whole classify(array) path ---

@pytest.fixture(scope="module")
def clf() -> DigitClassifier:
    """The shipped int8 model, loaded once for the module (not per example)."""
    return DigitClassifier()


def _check_reading(reading: Reading, shape: tuple[int, ...], clf: DigitClassifier) -> None:
    assert reading.text == "".join(str(d.label) for d in reading.digits)
    for d in reading.digits:
        assert 0 <= d.label <= 9 and clf.config.min_confidence <= d.confidence <= 1.0
        assert _inside(d.box, shape), (d.box, shape)


@given(a=arrays())
def test_classify_any_array_reads_or_refuses_in_one_line(clf: DigitClassifier, a: np.ndarray) -> None:
    if not is_image(a):
        with pytest.raises(InferenceError, match="not an image") as info:
            clf.classify(a)
        _one_line(info.value)
        return
    reading = clf.classify(a)
    event("digits" if reading.digits else "no digits")
    _check_reading(reading, a.shape, clf)


@given(photo=digit_photos())
def test_classify_digit_photos_in_any_dtype_with_bad_pixels(clf: DigitClassifier,
                                                            photo: tuple[np.ndarray, int]) -> None:
    a, n = photo
    reading = clf.classify(a)
    event("digits" if reading.digits else "no digits")
    _check_reading(reading, a.shape, clf)
    assert len(reading.digits) <= n + 2  # a few bad pixels may add a speck candidate, not a page of digits


def test_the_photo_strategy_reaches_the_digit_path(clf: DigitClassifier) -> None:
    """Guard against a fuzz that only ever feeds noise: clean photos of the strategy's digits are read."""
    gap = 8
    strip = np.zeros((28 + 2 * gap, gap + 3 * (28 + gap)), np.uint8)
    for i in range(3):
        strip[gap:gap + 28, gap + i * (28 + gap):gap + i * (28 + gap) + 28] = _DIGITS[i]
    photo = (230 - cv2.resize(strip, None, fx=3, fy=3).astype(np.float32) * 0.8) / 255
    reading = clf.classify(photo.astype(np.float32))
    assert len(reading.digits) >= 2, reading


def test_classify_a_strip_much_longer_than_max_side(clf: DigitClassifier) -> None:
    reading = clf.classify(np.zeros((1, 3000), np.uint8))
    assert reading.text == ""

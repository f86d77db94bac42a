"""The generated non-digit tiles: every family draws MNIST-like tiles, runs are reproducible, sizes follow the
digits, and the held-out family never reaches training."""

from __future__ import annotations

import numpy as np
import pytest

from digitkit.toolkit.negatives import FAMILIES, HELD_OUT, NegativesConfig, generate
from digitkit.toolkit.train import training_negatives


@pytest.fixture(scope="module")
def digits(synth_test_arrays: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return synth_test_arrays[0]


def test_every_family_draws_28x28_tiles_with_ink_centred_like_mnist(digits: np.ndarray) -> None:
    neg = generate(digits, families=dict.fromkeys(FAMILIES, 6), seed=3)
    drawn = set(neg.family.tolist())
    assert drawn == set(FAMILIES) - ({"fashion"} if not neg.fashion_available else set())
    assert neg.x.dtype == np.uint8 and neg.x.shape[1:] == (28, 28) and len(neg.x) == 6 * len(drawn)
    for tile in neg.x:
        ys, xs = np.nonzero(tile > 30)
        assert len(xs) > 0  # never an empty tile
        assert max(np.ptp(ys), np.ptp(xs)) + 1 <= 22  # inside MNIST's 20x20 box (plus blur)
        m = tile.astype(np.float64)
        cy, cx = (np.arange(28) @ m.sum(1)) / m.sum(), (np.arange(28) @ m.sum(0)) / m.sum()
        assert abs(cy - 14) <= 1.5 and abs(cx - 14) <= 1.5  # centre of mass at the centre, as MNIST


def test_generation_is_reproducible_and_the_seed_matters(digits: np.ndarray) -> None:
    a = generate(digits, families={"letters": 5, "pairs": 5}, seed=1)
    b = generate(digits, families={"letters": 5, "pairs": 5}, seed=1)
    c = generate(digits, families={"letters": 5, "pairs": 5}, seed=2)
    assert np.array_equal(a.x, b.x) and not np.array_equal(a.x, c.x)


def test_counts_follow_the_digits_and_the_held_out_family_is_never_trained_on(digits: np.ndarray) -> None:
    counts = NegativesConfig().counts(54_000)
    assert HELD_OUT not in counts and 13_000 <= sum(counts.values()) <= 14_000  # 0.25 per digit
    train, val = training_negatives(digits[:200], digits[200:240], seed=0)
    assert HELD_OUT not in set(train.family.tolist()) | set(val.family.tolist())
    assert abs(len(train.x) - 0.25 * 200) <= len(counts) and len(val.x) < len(train.x)
    assert not any(np.array_equal(t, v) for t in train.x[:20] for v in val.x)  # other seeds, other tiles


def test_an_unknown_family_is_refused(digits: np.ndarray) -> None:
    with pytest.raises(ValueError, match="unknown non-digit family 'runes'"):
        generate(digits, families={"runes": 3})

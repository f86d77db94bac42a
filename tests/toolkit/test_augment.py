"""Elastic distortion: seeded, shape-keeping, moves ink without losing it, off at alpha 0."""

from __future__ import annotations

import numpy as np

from digitkit.toolkit.augment import elastic


def _bars() -> np.ndarray:
    x = np.zeros((4, 28, 28, 1), np.float32)
    x[:, 6:22, 12:16] = 1.0  # a thick vertical stroke, like a 1
    return x


def test_elastic_is_reproducible_for_a_seed_and_differs_per_image() -> None:
    x = _bars()
    a = elastic(x, np.random.default_rng(3), 34.0, 4.0)
    b = elastic(x, np.random.default_rng(3), 34.0, 4.0)
    assert a.shape == x.shape and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert not np.array_equal(a[0], a[1])  # every image gets its own field
    assert not np.array_equal(a[0], x[0])


def test_elastic_moves_ink_without_losing_much_of_it_and_alpha_zero_is_identity() -> None:
    x = _bars()
    moved = elastic(x, np.random.default_rng(0), 34.0, 4.0)
    # The stroke is bent, not erased or smeared over the tile: ink mass stays within 25 %, the corners stay empty.
    assert np.all(np.abs(moved.sum(axis=(1, 2, 3)) / x.sum(axis=(1, 2, 3)) - 1) < 0.25)
    assert moved[:, :3, :3].max() == 0.0
    assert elastic(x, np.random.default_rng(0), 0.0, 4.0) is x
    # Both axes move: the x and y fields are drawn separately (Keras' RandomElasticTransform shares one seed).
    col = moved[..., 0].sum(axis=1)  # ink per column
    assert (col[:, :12].sum() + col[:, 16:].sum()) > 0

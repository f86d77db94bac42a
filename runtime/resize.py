"""Image resizing that gives the same pixels on every CPU, so a Raspberry Pi reads exactly what x86 reads.

OpenCV's ``INTER_LINEAR`` and its ``INTER_AREA`` for non-integer ratios compute in floating point with
per-architecture SIMD code and round differently on aarch64 than on x86-64 (``make test-pi`` found 1-pixel
box differences on 640x480 photos and a changed 20x20 tile now and then, OpenCV 5.0). So:

- enlarging uses ``INTER_LINEAR_EXACT``, OpenCV's bit-exact fixed-point bilinear;
- shrinking averages areas as ``INTER_AREA`` does, in integers: from prefix sums in numpy, with the weights
  counted in 1/n-pixel units, so every sum is an exact integer and only the final division rounds (half to
  even). The result is within 1 of ``INTER_AREA``.
"""

from __future__ import annotations

import cv2
import numpy as np


def _shrink_rows(a: np.ndarray, m: int) -> np.ndarray:
    """Sum each of ``m`` equal parts of every row of the 2-D array ``a``, exactly.

    With ``n`` pixels per row, part ``j`` spans ``[j*n, (j+1)*n)`` in units of 1/m pixel and pixel ``i``
    spans ``[i*m, (i+1)*m)``: both are integers, so the sums (in units of 1/m) are int64 values.
    """
    n = a.shape[1]
    acc = np.int32 if n * 255 < 2**31 else np.int64  # int32 halves the memory of the prefix sums
    prefix = np.zeros((a.shape[0], n + 1), acc)
    np.cumsum(a, axis=1, dtype=acc, out=prefix[:, 1:])
    k, r = np.divmod(np.arange(m + 1, dtype=np.int64) * n, m)  # each boundary: whole pixels, remainder
    partial = a[:, np.minimum(k, n - 1)].astype(np.int64) * r  # r is 0 at the last boundary (k == n)
    return np.diff(prefix[:, k].astype(np.int64) * m + partial, axis=1)


def _shrink_plane(plane: np.ndarray, w: int, h: int) -> np.ndarray:
    rows = _shrink_rows(plane, w)  # (H, w), in units of 1/w pixel
    both = _shrink_rows(np.ascontiguousarray(rows.T), h).T  # (h, w), in units of 1/(w*h) pixel
    den = plane.shape[0] * plane.shape[1]
    q, r = np.divmod(both, den)
    q += (2 * r > den) | ((2 * r == den) & (q % 2 == 1))  # half to even, as OpenCV's integer path rounds
    return q.astype(np.uint8)


def shrink(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area-average a uint8 image (H, W) or (H, W, C) down to ``size`` = (width, height), bit-exact.

    Args:
        image: uint8, 2-D or 3-D; ``size`` must not exceed it in either dimension.
        size: the output (width, height), each at least 1.

    Returns:
        The shrunk uint8 image; within 1 of ``cv2.INTER_AREA`` (which rounds through floats).

    Raises:
        ValueError: not uint8, or ``size`` is larger than the image or empty.
    """
    w, h = size
    ih, iw = image.shape[:2]
    if image.dtype != np.uint8:  # the prefix sums are sized for 0-255
        raise ValueError(f"shrink: needs a uint8 image, got {image.dtype}")
    if w > iw or h > ih or w < 1 or h < 1:
        raise ValueError(f"shrink: cannot resize {iw}x{ih} to {w}x{h}")
    if (w, h) == (iw, ih):
        return image
    if image.ndim == 2:
        return _shrink_plane(image, w, h)
    return np.stack([_shrink_plane(np.ascontiguousarray(image[..., c]), w, h) for c in range(image.shape[2])],
                    axis=-1)


def enlarge(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize to ``size`` = (width, height) with OpenCV's bit-exact fixed-point arithmetic."""
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR_EXACT)


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Shrink (area average) or enlarge (bilinear) a uint8 image to ``size`` = (width, height), bit-exact.

    A size smaller in one dimension and larger in the other is shrunk where smaller, then enlarged.
    """
    w, h = size
    ih, iw = image.shape[:2]
    if (w, h) == (iw, ih):
        return image
    if w <= iw and h <= ih:
        return shrink(image, size)
    if w >= iw and h >= ih:
        return enlarge(image, size)
    return enlarge(shrink(image, (min(w, iw), min(h, ih))), size)

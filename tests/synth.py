"""Seeded synthetic MNIST-shaped data: digits drawn with OpenCV's Hershey fonts, jittered, white on black.

Learnable in one short epoch, so fast tests can assert real accuracies instead of "no exception".
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import cv2
import numpy as np

FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX)


def synth_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images (n, 28, 28) of digits 0-9 (white on black) and their uint8 labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        canvas = np.zeros((56, 56), dtype=np.uint8)
        font = FONTS[int(rng.integers(len(FONTS)))]
        scale = float(rng.uniform(1.3, 1.7))
        thickness = int(rng.integers(3, 6))
        (w, h), _ = cv2.getTextSize(str(label), font, scale, thickness)
        x = (56 - w) // 2 + int(rng.integers(-3, 4))
        y = (56 + h) // 2 + int(rng.integers(-3, 4))
        cv2.putText(canvas, str(label), (x, y), font, scale, 255, thickness, cv2.LINE_AA)
        angle = float(rng.uniform(-12, 12))
        m = cv2.getRotationMatrix2D((28, 28), angle, 1.0)
        canvas = cv2.warpAffine(canvas, m, (56, 56))
        images[i] = cv2.resize(canvas, (28, 28), interpolation=cv2.INTER_AREA)
    noise = rng.normal(0, 6, size=images.shape)
    images = np.clip(images.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return images, labels


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as an IDX file (magic 0x0000080N, big-endian dims, data)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_folder(folder: Path, n_train: int = 1200, n_test: int = 300, seed: int = 0,
                     compress: bool = True) -> Path:
    """Write a synthetic dataset in MNIST's four-file IDX layout; return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    x_train, y_train = synth_digits(n_train, seed)
    x_test, y_test = synth_digits(n_test, seed + 1)
    for stem, arr in (("train-images-idx3-ubyte", x_train), ("train-labels-idx1-ubyte", y_train),
                      ("t10k-images-idx3-ubyte", x_test), ("t10k-labels-idx1-ubyte", y_test)):
        data = idx_bytes(arr)
        if compress:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(data, mtime=0))
        else:
            (folder / stem).write_bytes(data)
    return folder

"""Generated camera footage: numbers written as dark ink on paper-like backgrounds, a lighting gradient,
slight motion, sensor noise and blur, saved with ``cv2.VideoWriter`` as MJPG in .avi (which the headless
OpenCV wheel can write and read). Each video comes with the true reading of every frame.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from synth import synth_digits  # noqa: E402

Tiles = dict[int, list[np.ndarray]]


def synth_tiles(n: int = 400, seed: int = 7) -> Tiles:
    """28x28 white-on-black digit tiles from tests/synth.py, grouped by label."""
    images, labels = synth_digits(n, seed)
    out: Tiles = {d: [] for d in range(10)}
    for img, lab in zip(images, labels, strict=True):
        out[int(lab)].append(img)
    return out


def mnist_tiles(x: np.ndarray, y: np.ndarray, per_label: int = 30) -> Tiles:
    """The first ``per_label`` tiles of each label from an MNIST-format array."""
    out: Tiles = {d: [] for d in range(10)}
    for img, lab in zip(x, y, strict=True):
        if len(out[int(lab)]) < per_label:
            out[int(lab)].append(img)
    return out


def paper(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A BGR sheet of slightly tinted paper under a lighting gradient."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
    light = 0.78 + 0.2 * (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    tint = np.array([rng.uniform(200, 225), rng.uniform(215, 235), rng.uniform(225, 245)], np.float32)
    return light[..., None] * tint


def compose_number(text: str, tiles: Tiles, rng: np.random.Generator, digit_height: int = 96) -> np.ndarray:
    """An ink map (float 0-1, 1 = ink) of ``text`` written left to right with gaps between the digits."""
    scale = digit_height / 28
    side = int(round(28 * scale))
    gap = int(side * 0.15)
    canvas = np.zeros((side, max(1, len(text)) * (side + gap)), np.float32)
    for i, ch in enumerate(text):
        pool = tiles[int(ch)]
        tile = pool[int(rng.integers(len(pool)))]
        big = cv2.resize(tile, (side, side), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255.0
        x0 = i * (side + gap)
        canvas[:, x0:x0 + side] = np.maximum(canvas[:, x0:x0 + side], big)
    return np.clip(canvas, 0, 1)


def write_digit_video(path: str | Path, numbers: list[str], tiles: Tiles, frames_per_number: int = 10,
                      size: tuple[int, int] = (640, 480), fps: float = 15.0, seed: int = 0,
                      noise: float = 4.0, motion_px: float = 3.0, fourcc: str = "MJPG") -> list[str]:
    """Write a video showing each of ``numbers`` ("" = a blank page) for ``frames_per_number`` frames.

    Within one number the page drifts by up to ``motion_px`` pixels and every frame gets fresh noise.
    ``fourcc`` "FFV1" writes lossless frames (FFmpeg's MJPEG decoder gives other pixels on arm than on x86).

    Returns:
        The true reading of every frame, in order.
    """
    rng = np.random.default_rng(seed)
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {fourcc} to {path}")
    truth: list[str] = []
    try:
        for text in numbers:
            sheet = paper(size, rng)
            ink = compose_number(text, tiles, rng, digit_height=int(rng.integers(80, 120))) if text else None
            ink_rgb = np.array(rng.uniform(20, 70, 3), np.float32)  # dark blue-black pen
            if ink is not None:
                ih, iw = ink.shape
                cx = int(rng.integers(max(1, iw // 2 + 20), max(iw // 2 + 21, w - iw // 2 - 20)))
                cy = int(rng.integers(h // 2 - 60, h // 2 + 60))
            phase = rng.uniform(0, 2 * np.pi)
            for f in range(frames_per_number):
                frame = sheet.copy()
                if ink is not None:
                    dx = motion_px * np.sin(phase + f * 0.7)
                    dy = motion_px * np.cos(phase + f * 0.5)
                    m = np.float32([[1, 0, cx - iw / 2 + dx], [0, 1, cy - ih / 2 + dy]])
                    placed = cv2.warpAffine(ink, m, (w, h))[..., None]
                    frame = frame * (1 - placed) + ink_rgb * placed
                frame = cv2.GaussianBlur(frame, (3, 3), 0.8)
                frame += rng.normal(0, noise, frame.shape).astype(np.float32)
                writer.write(np.clip(frame, 0, 255).astype(np.uint8))
                truth.append(text)
    finally:
        writer.release()
    return truth


def read_frames(path: str | Path) -> list[np.ndarray]:
    """Every frame of a video file, in order."""
    cap = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return frames
            frames.append(frame)
    finally:
        cap.release()

"""One frame in, one reading and an annotated frame out: the per-frame half of ``digitkit camera``.

:class:`FrameProcessor` crops the region of interest, runs the digit reader, maps boxes back to frame
pixels, smooths the reading over the last K frames and draws the overlay.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

from digitkit.runtime.classifier import Digit
from digitkit.runtime.errors import InferenceError
from digitkit.runtime.overlay import draw_overlay
from digitkit.runtime.smoothing import ReadingSmoother


@dataclass(frozen=True)
class FrameReading:
    """One processed frame. ``text`` is the smoothed reading, ``digits`` this frame's own detections,
    ``latency_ms`` its processing time (preprocess + segment + classify + draw)."""

    frame: int
    text: str
    stable: bool
    digits: tuple[Digit, ...]  # in full-frame pixels: the same value (and JSON) as a digit read from a file
    latency_ms: float

    @property
    def raw_text(self) -> str:
        """This frame's own reading, before smoothing."""
        return "".join(str(d.label) for d in self.digits)

    def to_dict(self) -> dict[str, Any]:
        """Exactly the ``--json`` line: frame, text, stable, digits, latency_ms."""
        return {"frame": self.frame, "text": self.text, "stable": self.stable,
                "digits": [d.to_dict() for d in self.digits], "latency_ms": round(self.latency_ms, 3)}


class Reader(Protocol):
    """A per-frame digit reader: an image in, an object with ``text`` and ``digits`` out."""

    def __call__(self, image: np.ndarray) -> Any: ...


def parse_roi(text: str | None) -> tuple[int, int, int, int] | None:
    """``"x,y,w,h"`` -> a tuple of ints (None passes through).

    Raises:
        InferenceError: not four integers, or a negative origin or a non-positive size.
    """
    if text is None or text == "":
        return None
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise InferenceError(f"--roi {text!r} is not x,y,w,h (four integers, e.g. 100,80,400,200)") from None
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        raise InferenceError(f"--roi {text!r}: x and y must be >= 0, w and h > 0")
    return x, y, w, h


def clip_roi(roi: tuple[int, int, int, int], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """``roi`` cut to the frame; raises InferenceError when nothing of it is inside the frame."""
    h, w = shape[:2]
    x, y, rw, rh = roi
    x1, y1 = min(x + rw, w), min(y + rh, h)
    if x >= w or y >= h or x1 - x < 8 or y1 - y < 8:
        raise InferenceError(f"--roi {','.join(map(str, roi))} lies outside the {w}x{h} frame; "
                             "pick a region inside it")
    return x, y, x1 - x, y1 - y


class FrameProcessor:
    """Frame -> :class:`FrameReading` and the annotated frame: ROI crop, read, smooth, draw.

    Args:
        reader: the per-frame digit reader (e.g. ``DigitClassifier(...).classify``).
        smooth: frames that must agree before a reading is shown (see :class:`ReadingSmoother`).
        roi: read only inside this region (clipped to the frame on the first frame).
        size: (width, height) to resize frames to, or None.
        draw: annotate the frame (off when nobody looks at it, e.g. plain ``--json``).
    """

    def __init__(self, reader: Reader, smooth: int = 5, roi: tuple[int, int, int, int] | None = None,
                 size: tuple[int, int] | None = None, draw: bool = True) -> None:
        self.reader = reader
        self.smoother = ReadingSmoother(smooth)
        self.roi = roi
        self.size = size
        self.draw = draw
        self.fps = 0.0
        self._roi_checked = roi is None
        self._ends: deque[float] = deque(maxlen=30)  # when the last frames finished: the shown FPS

    def __call__(self, index: int, image: np.ndarray) -> tuple[FrameReading, np.ndarray]:
        t0 = time.perf_counter()
        if self.size is not None and (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        if not self._roi_checked:
            self.roi = clip_roi(self.roi, image.shape)  # type: ignore[arg-type]
            self._roi_checked = True
        if self.roi is not None:
            x, y, w, h = self.roi
            result = self.reader(image[y:y + h, x:x + w])
        else:
            x = y = 0
            result = self.reader(image)
        digits = tuple(Digit(int(d.label), float(d.confidence),
                                 (int(d.box[0]) + x, int(d.box[1]) + y, int(d.box[2]), int(d.box[3])))
                       for d in result.digits)
        smoothed = self.smoother.update("".join(str(d.label) for d in digits))
        if self.draw:
            if image.ndim == 2:
                image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
            draw_overlay(image, digits, smoothed.text, smoothed.stable, self.fps,
                         (time.perf_counter() - t0) * 1000, self.roi)
        end = time.perf_counter()
        self._ends.append(end)
        if len(self._ends) > 1:
            self.fps = (len(self._ends) - 1) / max(self._ends[-1] - self._ends[0], 1e-9)
        reading = FrameReading(index, smoothed.text, smoothed.stable, digits, (end - t0) * 1000)
        return reading, image

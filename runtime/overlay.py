"""What the live view draws on each frame: the ROI guide, digit boxes with label and confidence, the
current reading (green when stable), and the processing FPS and latency. Drawn in place (the caller
owns the frame) with a handful of OpenCV calls, a fraction of a millisecond at 640x480."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

_GREEN = (40, 200, 40)
_AMBER = (0, 170, 255)
_GUIDE = (255, 160, 0)
_WHITE = (255, 255, 255)
_BLACK = (0, 0, 0)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, color: tuple[int, int, int],
          thickness: int) -> None:
    # a dark outline keeps the text legible on white paper and on dark scenes alike
    cv2.putText(img, text, org, _FONT, scale, _BLACK, thickness + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, _FONT, scale, color, thickness, cv2.LINE_AA)


def draw_overlay(img: np.ndarray, digits: Sequence[object], text: str, stable: bool,
                 fps: float, latency_ms: float, roi: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Annotate a BGR frame in place and return it.

    Args:
        img: the BGR frame (modified).
        digits: objects with ``label``, ``confidence`` and ``box`` (x, y, w, h) in frame pixels.
        text: the smoothed reading; ``stable`` whether the last K frames agreed on it.
        fps: processing frames per second; ``latency_ms`` the last frame's processing time.
        roi: the region read, drawn as a guide box.
    """
    h, w = img.shape[:2]
    s = max(1.0, min(h, w) / 480)
    t = max(1, round(s))
    if roi is not None:
        x, y, rw, rh = roi
        cv2.rectangle(img, (x, y), (x + rw - 1, y + rh - 1), _GUIDE, t)
    for d in digits:
        x, y, bw, bh = d.box  # type: ignore[attr-defined]
        color = _GREEN if stable else _AMBER
        cv2.rectangle(img, (x, y), (x + bw - 1, y + bh - 1), color, t + 1)
        label = f"{d.label} {d.confidence:.2f}"  # type: ignore[attr-defined]
        ty = y - 6 if y > 22 * s else min(h - 4, y + bh + int(18 * s))
        _text(img, label, (x, ty), 0.6 * s, color, t)
    shown = text if text else "-"
    _text(img, shown + ("" if stable else " ..."), (int(10 * s), int(42 * s)), 1.4 * s,
          _GREEN if stable else _AMBER, 2 * t)
    _text(img, f"{fps:5.1f} fps  {latency_ms:5.1f} ms", (int(10 * s), h - int(10 * s)), 0.55 * s, _WHITE, t)
    return img

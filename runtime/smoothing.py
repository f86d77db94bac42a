"""Temporal smoothing of a live reading: what the camera shows changes only when K frames in a row agree.

A steady scene read by a 99 % network still flips a label now and then (a motion-blurred frame, a
reflection). Showing every frame's raw reading makes the number flicker; showing the last reading that
K consecutive frames agreed on does not, and says honestly when the scene is settled (``stable``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Smoothed:
    """One frame's smoothed reading: ``text`` is the last agreed reading, ``stable`` whether the last K
    frames all read exactly that."""

    text: str
    stable: bool


class ReadingSmoother:
    """Holds the raw readings of the last ``k`` frames and the last reading they all agreed on.

    Before the first agreement the shown text is ``""`` (nothing confirmed yet). ``k=1`` turns
    smoothing off: every frame is its own agreement and always stable.

    Args:
        k: how many consecutive frames must agree (>= 1).

    Raises:
        ValueError: ``k`` < 1.
    """

    def __init__(self, k: int = 5) -> None:
        if k < 1:
            raise ValueError(f"smoothing window must be >= 1 frame, got {k}")
        self.k = k
        self._window: deque[str] = deque(maxlen=k)
        self._agreed = ""

    def update(self, raw_text: str) -> Smoothed:
        """Add one frame's raw reading; return the reading to show."""
        self._window.append(raw_text)
        stable = len(self._window) == self.k and all(t == raw_text for t in self._window)
        if stable:
            self._agreed = raw_text
        return Smoothed(text=self._agreed, stable=stable)

    @property
    def agreed(self) -> str:
        """The last reading all K frames agreed on (``""`` before the first agreement)."""
        return self._agreed

"""Frames from a camera index, a device path, a video file or a network stream, on their own thread.

Two policies, chosen by the kind of source:

- live (camera, /dev/videoN, rtsp://, http://...): the grabber keeps only the newest frame. A slow
  consumer skips frames instead of falling behind, so latency never grows. A source that stops
  delivering is reopened with exponential backoff for a bounded time.
- file: every frame is handed over in order through a two-slot buffer (the reader waits for the
  consumer), so a video file gives the same readings on every run.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from digitkit.runtime.errors import InferenceError

# FFmpeg waits 30 s by default for a dead network stream; a camera should notice much sooner.
STREAM_TIMEOUT_MS = 5000
_BACKOFF_FIRST_S = 0.1
_BACKOFF_MAX_S = 2.0
_FILE_BUFFER = 2


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` the grabber uses (tests pass fakes)."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...


def parse_source(text: str | int) -> int | str:
    """``"0"`` -> camera index 0; anything else (device path, file, URL) stays a string."""
    if isinstance(text, int):
        return text
    text = str(text).strip()
    if not text:
        raise InferenceError("empty --source; pass a camera index (0), /dev/videoN, a video file or a URL")
    return int(text) if text.isdigit() else text


def is_live(source: int | str) -> bool:
    """Cameras, device paths and network streams are live; anything else is a file read frame by frame."""
    if isinstance(source, int):
        return True
    if "://" in source and not source.startswith("file://"):
        return True
    return source.startswith("/dev/")


def _silence_opencv() -> None:
    # OpenCV prints "[ WARN:0@0.04] ... can't open camera by index" and FFmpeg "[tcp @ 0x..] Connection
    # refused" on stderr; our own one-line error names the source instead. (FFmpeg reads this once.)
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # pragma: no cover - very old OpenCV builds
        pass


def open_capture(source: int | str, width: int | None = None, height: int | None = None) -> cv2.VideoCapture:
    """Open ``source`` with OpenCV and ask for ``width`` x ``height`` (cameras may pick the nearest mode).

    Raises:
        InferenceError: (exit code 2) the source does not exist or OpenCV cannot open or read it.
    """
    _silence_opencv()
    if isinstance(source, str) and "://" not in source and not Path(source).exists():
        raise InferenceError(f"cannot open video source {source!r}: no such file or device")
    if isinstance(source, str) and "://" in source and not source.startswith("file://"):
        cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                                                         cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS])
    else:
        cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        cap.release()
        if isinstance(source, str) and "://" in source:
            hint = "is the stream up and the URL right?"
        elif is_live(source):
            hint = "is the camera plugged in and free?"
        else:
            hint = "is it a video OpenCV can decode?"
        raise InferenceError(f"cannot open video source {source!r}; {hint}")
    if width:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
    if height:
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
    return cap


@dataclass(frozen=True)
class Frame:
    """One captured frame: its number in the source (gaps = frames a live source skipped) and when it came."""

    index: int
    image: np.ndarray
    captured_at: float  # time.perf_counter()


class FrameGrabber:
    """Reads a source on a daemon thread; :meth:`next` hands frames to the processing loop.

    Args:
        opener: opens (or reopens) the source; raises :class:`InferenceError` or returns a capture.
        live: keep only the newest frame and reconnect on failure (True), or hand over every frame (False).
        reconnect_seconds: how long a live source may stay silent (reopening with backoff) before giving up.
        first: an already opened capture (so the caller reports an unopenable source before starting).
        pace_fps: for a file, hand frames over no faster than this (its recorded rate) so a person
            watching sees it at normal speed; 0 = as fast as the consumer takes them.
    """

    def __init__(self, opener: Callable[[], Capture], live: bool, reconnect_seconds: float = 10.0,
                 first: Capture | None = None, pace_fps: float = 0.0) -> None:
        self._opener = opener
        self.live = live
        self.reconnect_seconds = reconnect_seconds
        self._cap = first
        self._cond = threading.Condition()
        self._buffer: deque[Frame] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ended: str | None = None  # "end of file" | "source lost" once the source is finished
        self.dropped = 0  # live frames replaced by a newer one before the consumer took them
        self.reconnects = 0
        self._index = 0  # frames read from the source so far (across reconnects)
        self.pace_fps = pace_fps

    def start(self) -> FrameGrabber:
        if self._cap is None:
            self._cap = self._opener()
        self._thread = threading.Thread(target=self._run, name="digitkit-capture", daemon=True)
        self._thread.start()
        return self

    def next(self, timeout: float = 0.5) -> Frame | None:
        """The next frame (file) or the newest frame (live); None on timeout or once the source ended."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._buffer or self.ended or self._stop.is_set(), timeout):
                return None
            if not self._buffer:
                return None
            frame = self._buffer.popleft()
            self._cond.notify_all()  # a file reader waiting for room may go on
            return frame

    def stop(self) -> None:
        """Stop the thread and release the source (idempotent)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=STREAM_TIMEOUT_MS / 1000 + 1)
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _finish(self, reason: str) -> None:
        with self._cond:
            self.ended = reason
            self._cond.notify_all()

    def _push(self, image: np.ndarray) -> None:
        frame = Frame(self._index, image, time.perf_counter())
        self._index += 1
        with self._cond:
            if self.live:
                self.dropped += len(self._buffer)
                self._buffer.clear()
            else:
                self._cond.wait_for(lambda: len(self._buffer) < _FILE_BUFFER or self._stop.is_set())
            self._buffer.append(frame)
            self._cond.notify_all()

    def _run(self) -> None:
        t0 = time.perf_counter()
        while not self._stop.is_set():
            if self.pace_fps > 0 and not self.live:
                self._stop.wait(max(0.0, t0 + self._index / self.pace_fps - time.perf_counter()))
            ok, image = self._cap.read() if self._cap is not None else (False, None)
            if not ok or image is None:
                if not self.live:
                    self._finish("end of file")
                    return
                if not self._reconnect():
                    self._finish("source lost")
                    return
                continue
            self._push(image)

    def _reconnect(self) -> bool:
        """Reopen a silent live source with exponential backoff until ``reconnect_seconds`` have passed."""
        deadline = time.monotonic() + self.reconnect_seconds
        delay = _BACKOFF_FIRST_S
        while not self._stop.is_set() and time.monotonic() < deadline:
            if self._cap is not None:
                self._cap.release()
                self._cap = None
            self._stop.wait(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, _BACKOFF_MAX_S)
            try:
                cap = self._opener()
            except InferenceError:
                continue
            ok, image = cap.read()
            if ok and image is not None:
                self._cap = cap
                self.reconnects += 1
                self._push(image)
                return True
            cap.release()
        return False


def display_available() -> bool:
    """Whether a window could appear: a display server on Linux (macOS and Windows always have one)."""
    if os.name != "posix" or os.uname().sysname == "Darwin":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))

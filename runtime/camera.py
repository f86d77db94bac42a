"""Live digit reading from a camera, a video file or a network stream: the library behind ``digitkit camera``.

    from runtime.camera import CameraConfig, run_camera
    summary = run_camera(CameraConfig(source="clip.avi", smooth=5), on_frame=print)

Capture runs on its own thread (:mod:`runtime.capture`); this module's loop takes each frame, reads the
digits in it (optionally inside a region of interest), smooths the reading over the last K frames,
draws the result, and hands it to the JSON printer, the browser view and the OpenCV window.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

from runtime.capture import Capture, FrameGrabber, display_available, is_live, open_capture, parse_source
from runtime.errors import InferenceError
from runtime.overlay import draw_overlay
from runtime.smoothing import ReadingSmoother

WINDOW = "digitkit camera"


@dataclass(frozen=True)
class CameraConfig:
    """Every option of ``digitkit camera``; the CLI and the Python twin share these defaults."""

    source: str = "0"  # camera index, /dev/videoN, video file or stream URL
    model: str | None = None  # None = the model shipped in runtime/models/
    width: int | None = None  # requested frame size; frames of another size are resized to it
    height: int | None = None
    serve: str | None = None  # "[HOST:]PORT" for the browser view; None = no server
    show: bool = False  # an OpenCV window (needs a GUI build of OpenCV and a display)
    max_frames: int | None = None  # stop after this many processed frames
    roi: tuple[int, int, int, int] | None = None  # x, y, w, h: read only inside this region
    threads: int | None = None  # interpreter threads
    smooth: int = 5  # frames that must agree before a reading is shown and marked stable
    min_confidence: float | None = None  # None = the classifier's default
    reconnect_seconds: float = 10.0  # how long a silent live source is retried before giving up
    stream_fps: float = 30.0  # most JPEGs per second the browser view encodes
    realtime: bool | None = None  # play a file at its recorded rate; None = when --serve or --show watches

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "roi": list(self.roi) if self.roi else None}


@dataclass(frozen=True)
class Detection:
    """One digit in a frame, in full-frame pixels."""

    label: int
    confidence: float
    box: tuple[int, int, int, int]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "confidence": round(self.confidence, 4), "box": list(self.box)}


@dataclass(frozen=True)
class FrameReading:
    """One processed frame. ``text`` is the smoothed reading, ``digits`` this frame's own detections,
    ``latency_ms`` its processing time (preprocess + segment + classify + draw)."""

    frame: int
    text: str
    stable: bool
    digits: tuple[Detection, ...]
    latency_ms: float

    @property
    def raw_text(self) -> str:
        """This frame's own reading, before smoothing."""
        return "".join(str(d.label) for d in self.digits)

    def to_dict(self) -> dict[str, Any]:
        """Exactly the ``--json`` line: frame, text, stable, digits, latency_ms."""
        return {"frame": self.frame, "text": self.text, "stable": self.stable,
                "digits": [d.to_dict() for d in self.digits], "latency_ms": round(self.latency_ms, 3)}


@dataclass(frozen=True)
class CameraSummary:
    """How a run went. ``stop_reason``: end of file, max frames, interrupted, window closed, source lost."""

    source: str
    frames: int
    seconds: float
    mean_fps: float
    latency_p50_ms: float
    latency_p95_ms: float
    stop_reason: str
    dropped: int = 0  # live frames skipped because a newer one had arrived
    reconnects: int = 0
    last_text: str = ""  # the last smoothed reading

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}

    def lines(self) -> list[str]:
        """The human summary printed at the end of a run."""
        out = [f"{self.frames} frames in {self.seconds:.1f} s from {self.source}: {self.mean_fps:.1f} fps, "
               f"latency p50 {self.latency_p50_ms:.1f} ms, p95 {self.latency_p95_ms:.1f} ms "
               f"(stopped: {self.stop_reason})"]
        if self.dropped or self.reconnects:
            out.append(f"{self.dropped} frames skipped to stay live, {self.reconnects} reconnects")
        return out


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
        digits = tuple(Detection(int(d.label), float(d.confidence),
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


def default_reader(config: CameraConfig) -> Reader:
    """The shipped (or ``--model``) int8 classifier as a per-frame reader."""
    from runtime.classifier import DigitClassifier

    overrides: dict[str, Any] = {"threads": config.threads}
    if config.min_confidence is not None:
        overrides["min_confidence"] = config.min_confidence
    return DigitClassifier(model_path=config.model, **overrides).classify


def _check_window() -> None:
    if not display_available():
        raise InferenceError("--show needs a display (DISPLAY/WAYLAND_DISPLAY is not set); "
                             "use --serve PORT and open the page in a browser instead")
    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_AUTOSIZE)
    except cv2.error:
        raise InferenceError("--show needs OpenCV with GUI support: this is opencv-python-headless; "
                             "pip install opencv-python (same version) instead, or use --serve PORT") from None


def _recorded_fps(cap: Capture) -> float:
    get = getattr(cap, "get", None)
    fps = float(get(cv2.CAP_PROP_FPS)) if get is not None else 0.0
    return fps if 0 < fps <= 240 else 25.0


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def run_camera(config: CameraConfig | None = None, on_frame: Callable[[FrameReading], None] | None = None,
               reader: Reader | None = None, opener: Callable[[], Capture] | None = None,
               on_start: Callable[[str], None] | None = None,
               stop: threading.Event | None = None) -> CameraSummary:
    """Read digits from ``config.source`` until it ends, ``max_frames``, Ctrl-C/SIGTERM or the source is lost.

    Args:
        config: the options (defaults: :class:`CameraConfig`).
        on_frame: called with every processed frame's reading (the CLI prints ``--json`` lines here).
        reader: the per-frame digit reader; None = :func:`default_reader`.
        opener: opens the source (tests inject fakes); None = :func:`runtime.capture.open_capture`.
        on_start: called with the browser view's URL once the server listens.
        stop: set it (from any thread) to end the run as Ctrl-C would.

    Returns:
        The :class:`CameraSummary`; ``stop_reason == "source lost"`` when a live source died for good.

    Raises:
        InferenceError: (exit 2) bad options, the port is in use, the model or the source cannot be opened.
    """
    cfg = config or CameraConfig()
    source = parse_source(cfg.source)
    if cfg.smooth < 1:
        raise InferenceError(f"--smooth {cfg.smooth}: must be >= 1 frame")
    if (cfg.width is None) != (cfg.height is None) or any(v is not None and v <= 0 for v in (cfg.width, cfg.height)):
        raise InferenceError("--width and --height go together and must be positive")
    if cfg.show:
        _check_window()
    server = None
    if cfg.serve is not None:
        from runtime.server import ViewerServer, parse_address

        host, port = parse_address(cfg.serve)
        server = ViewerServer(host, port, max_fps=cfg.stream_fps).start()  # port in use -> exit 2 here
    grabber: FrameGrabber | None = None
    processor = None
    latencies: list[float] = []
    frames = 0
    reason = "interrupted"
    started = time.perf_counter()
    stop = stop if stop is not None else threading.Event()
    old_term = None
    try:
        read = reader or default_reader(cfg)
        open_fn = opener or (lambda: open_capture(source, cfg.width, cfg.height))
        first = open_fn()
        realtime = cfg.realtime if cfg.realtime is not None else (cfg.show or server is not None)
        pace = _recorded_fps(first) if realtime else 0.0
        grabber = FrameGrabber(open_fn, live=is_live(source), reconnect_seconds=cfg.reconnect_seconds,
                               first=first, pace_fps=pace)
        if threading.current_thread() is threading.main_thread():  # systemd stops a service with SIGTERM
            old_term = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        size = (cfg.width, cfg.height) if cfg.width and cfg.height else None
        processor = FrameProcessor(read, cfg.smooth, cfg.roi, size, draw=cfg.show or server is not None)
        if server is not None and on_start is not None:
            on_start(server.url)
        grabber.start()
        started = time.perf_counter()
        while True:
            if stop.is_set():
                reason = "interrupted"
                break
            frame = grabber.next(timeout=0.25)
            if frame is None:
                if grabber.ended:
                    reason = grabber.ended
                    break
                continue
            reading, annotated = processor(frame.index, frame.image)
            frames += 1
            latencies.append(reading.latency_ms)
            if on_frame is not None:
                on_frame(reading)
            if server is not None:
                server.publish(reading.to_dict(), annotated)
            if cfg.show:
                cv2.imshow(WINDOW, annotated)
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    reason = "window closed"
                    break
            if cfg.max_frames is not None and frames >= cfg.max_frames:
                reason = "max frames"
                break
    except KeyboardInterrupt:
        reason = "interrupted"
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        if grabber is not None:
            grabber.stop()
        if server is not None:
            server.close()
        if cfg.show:
            cv2.destroyAllWindows()
    seconds = time.perf_counter() - started
    return CameraSummary(
        source=os.fspath(cfg.source), frames=frames, seconds=seconds,
        mean_fps=frames / seconds if seconds > 0 and frames else 0.0,
        latency_p50_ms=_percentile(latencies, 50), latency_p95_ms=_percentile(latencies, 95),
        stop_reason=reason, dropped=grabber.dropped if grabber else 0,
        reconnects=grabber.reconnects if grabber else 0,
        last_text=processor.smoother.agreed if processor else "",
    )

"""Live digit reading from a camera, a video file or a network stream: the library behind ``digitkit camera``.

    from digitkit.runtime.camera import CameraConfig, run_camera
    summary = run_camera(CameraConfig(source="clip.avi", smooth=5), on_frame=print)

Capture runs on its own thread (:mod:`digitkit.runtime.capture`); this module's loop takes each frame, reads the
digits in it (optionally inside a region of interest), smooths the reading over the last K frames,
draws the result, and hands it to the JSON printer, the browser view and the OpenCV window.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from digitkit.runtime.capture import Capture, FrameGrabber, display_available, is_live, open_capture, parse_source
from digitkit.runtime.errors import InferenceError
from digitkit.runtime.frames import FrameProcessor, FrameReading, Reader, clip_roi, parse_roi

__all__ = ["CameraConfig", "CameraSummary", "FrameProcessor", "FrameReading", "Reader", "clip_roi",
           "default_reader", "parse_roi", "run_camera"]

WINDOW = "digitkit camera"


@dataclass(frozen=True)
class CameraConfig:
    """Every option of ``digitkit camera``; the CLI and the Python twin share these defaults."""

    source: str = "0"  # camera index, /dev/videoN, video file or stream URL
    model: str | None = None  # None = the model shipped in runtime/models/
    width: int | None = None  # requested frame size; frames of another size are resized to it
    height: int | None = None
    serve: str | None = None  # "[HOST:]PORT" for the browser view; None = no server
    allow_hosts: tuple[str, ...] = ()  # more names the browser view answers to (Host header), e.g. "mypi.local"
    show: bool = False  # an OpenCV window (needs a GUI build of OpenCV and a display)
    max_frames: int | None = None  # stop after this many processed frames
    roi: tuple[int, int, int, int] | None = None  # x, y, w, h: read only inside this region
    threads: int | None = None  # interpreter threads
    smooth: int = 5  # frames that must agree before a reading is shown and marked stable
    min_confidence: float | None = None  # None = the classifier's default
    reconnect_seconds: float = 10.0  # how long a silent live source is retried before giving up
    stream_fps: float = 30.0  # most JPEGs per second the browser view encodes
    realtime: bool | None = None  # play a file at its recorded rate; None = when --serve or --show watches


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

    def lines(self) -> list[str]:
        """The human summary printed at the end of a run."""
        out = [f"{self.frames} frames in {self.seconds:.1f} s from {self.source}: {self.mean_fps:.1f} fps, "
               f"latency p50 {self.latency_p50_ms:.1f} ms, p95 {self.latency_p95_ms:.1f} ms "
               f"(stopped: {self.stop_reason})"]
        if self.dropped or self.reconnects:
            out.append(f"{self.dropped} frames skipped to stay live, {self.reconnects} reconnects")
        return out


def default_reader(config: CameraConfig) -> Reader:
    """The shipped (or ``--model``) int8 classifier as a per-frame reader."""
    from digitkit.runtime.classifier import DigitClassifier

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
               stop: threading.Event | None = None,
               on_warning: Callable[[str], None] | None = None) -> CameraSummary:
    """Read digits from ``config.source`` until it ends, ``max_frames``, Ctrl-C/SIGTERM or the source is lost.

    Args:
        config: the options (defaults: :class:`CameraConfig`).
        on_frame: called with every processed frame's reading (the CLI prints ``--json`` lines here).
        reader: the per-frame digit reader; None = :func:`default_reader`.
        opener: opens the source (tests inject fakes); None = :func:`digitkit.runtime.capture.open_capture`.
        on_start: called with the browser view's URL once the server listens.
        stop: set it (from any thread) to end the run as Ctrl-C would.
        on_warning: called with a warning worth a line at start (the browser view reachable from other
            machines); None = printed on stderr as ``warning: ...``.

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
        from digitkit.runtime.server import ViewerServer, parse_address

        host, port = parse_address(cfg.serve)
        server = ViewerServer(host, port, max_fps=cfg.stream_fps, allow_hosts=cfg.allow_hosts).start()  # in use: exit 2
        if server.warning:
            (on_warning or (lambda text: print(f"warning: {text}", file=sys.stderr, flush=True)))(server.warning)
    grabber: FrameGrabber | None = None
    processor = None
    latencies: list[float] = []
    frames = 0
    reason = "interrupted"
    started = time.perf_counter()
    stop = stop if stop is not None else threading.Event()
    old_term = None
    try:
        open_fn = opener or (lambda: open_capture(source, cfg.width, cfg.height))
        first = open_fn()  # an unopenable source fails before the model loads
        realtime = cfg.realtime if cfg.realtime is not None else (cfg.show or server is not None)
        pace = _recorded_fps(first) if realtime else 0.0
        grabber = FrameGrabber(open_fn, live=is_live(source), reconnect_seconds=cfg.reconnect_seconds,
                               first=first, pace_fps=pace)  # from here on, `finally` releases the source
        read = reader or default_reader(cfg)
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

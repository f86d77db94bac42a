"""The browser view of ``digitkit camera --serve``: a page, the annotated MJPEG stream and the latest reading.

Standard library only (``http.server.ThreadingHTTPServer``, hardened in :mod:`digitkit.runtime.httpguard`:
capped connections, bounded request heads, a Host allow-list): one thread per connection. The processing loop
never waits for a viewer: it drops the newest annotated frame into a slot and returns. An encoder thread
turns the newest frame into a JPEG (at most ``max_fps`` per second, and only while somebody watches),
bumps a version counter and wakes the viewers; each viewer sends the newest JPEG it has not sent yet.
There is no per-viewer queue, so a viewer that stalls only stalls itself, and its socket timeout ends it.
When all viewer slots are taken, a newcomer takes the slot of a viewer that has been stuck in one write for
over ``STALL_S`` (a client that connected and never reads), so such clients cannot lock real viewers out.
``HEAD`` gets the headers of any route, never a body and never a viewer slot.

Routes: ``/`` the page, ``/stream.mjpg`` the stream, ``/snapshot.jpg`` one frame, ``/reading`` JSON.
"""

from __future__ import annotations

import errno
import json
import socket
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import cv2
import numpy as np

from digitkit.runtime import httpguard
from digitkit.runtime.errors import InferenceError
from digitkit.runtime.httpguard import GuardedHandler, GuardedServer, is_loopback
from digitkit.runtime.viewer_page import DEFAULT_HOST, PAGE, parse_address  # noqa: F401  (parse_address: re-exported)

DEFAULT_PORT = 8080
WRITE_TIMEOUT_S = 5.0  # a viewer whose socket accepts nothing for this long is dropped
MAX_VIEWERS = 32  # streams at once; bounds the threads and the encoder's work on a small device
STALL_S = 1.0  # a viewer stuck this long in one frame's write gives its slot to a newcomer when all are taken
_IDLE_ENCODE_S = 1.0  # with no viewer, still refresh the snapshot this often
_BOUNDARY = "digitkitframe"

@dataclass
class _Viewer:
    """One stream's state, for finding a stalled viewer to evict."""

    sock: socket.socket
    writing_since: float | None = None  # monotonic time the current frame's write began; None between frames
    evicted: bool = False


class _Hub:
    """The newest frame, its JPEG and the newest reading, guarded by one condition."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.frame: np.ndarray | None = None
        self.frame_version = 0
        self.jpeg: bytes | None = None
        self.jpeg_version = 0
        self.reading: dict[str, Any] | None = None
        self.viewers = 0
        self.streams: list[_Viewer] = []
        self.evicted = 0  # stalled viewers that gave their slot to a newcomer
        self.closed = False

    def take_slot(self, sock: socket.socket) -> _Viewer | None:
        """A viewer slot for ``sock`` (evicting a stalled viewer if every slot is taken), or None. Hold ``cond``."""
        if self.viewers >= MAX_VIEWERS:
            now = time.monotonic()
            stalled = [v for v in self.streams if v.writing_since is not None and now - v.writing_since > STALL_S]
            if not stalled:
                return None
            victim = min(stalled, key=lambda v: v.writing_since or now)
            victim.evicted = True
            self.streams.remove(victim)
            self.viewers -= 1
            self.evicted += 1
            try:
                victim.sock.shutdown(socket.SHUT_RDWR)  # its blocked write fails now, its thread ends
            except OSError:
                pass
        viewer = _Viewer(sock)
        self.streams.append(viewer)
        self.viewers += 1
        self.cond.notify_all()  # the encoder starts encoding every frame again
        return viewer

    def release(self, viewer: _Viewer) -> None:
        """Give the slot back (unless it was taken from this viewer already). Hold ``cond``."""
        if not viewer.evicted:
            self.streams.remove(viewer)
            self.viewers -= 1


class _Server(GuardedServer):
    hub: _Hub


class _Handler(GuardedHandler):
    server: _Server

    @property
    def write_timeout(self) -> float:  # type: ignore[override]
        return WRITE_TIMEOUT_S  # read at each request, so tests can shorten it

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.split("?", 1)[0] == "/stream.mjpg":  # its headers only: no body, no viewer slot
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            return
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        hub = self.server.hub
        try:
            if path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, PAGE.encode(), "text/html; charset=utf-8")
            elif path == "/reading":
                with hub.cond:
                    reading = hub.reading
                if reading is None:
                    self._send(HTTPStatus.SERVICE_UNAVAILABLE, b'{"error": "no frame processed yet"}\n',
                               "application/json")
                else:
                    self._send(HTTPStatus.OK, (json.dumps(reading) + "\n").encode(), "application/json")
            elif path == "/snapshot.jpg":
                jpeg = self._wait_jpeg(0, timeout=WRITE_TIMEOUT_S)
                if jpeg is None:
                    self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"no frame yet\n", "text/plain")
                else:
                    self._send(HTTPStatus.OK, jpeg[1], "image/jpeg")
            elif path == "/stream.mjpg":
                self._stream()
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found: try / /stream.mjpg /reading\n", "text/plain")
        except OSError:  # includes TimeoutError from the socket timeout
            self.close_connection = True  # the viewer went away or stalled; only this thread ends

    def _wait_jpeg(self, seen: int, timeout: float) -> tuple[int, bytes] | None:
        hub = self.server.hub
        with hub.cond:
            hub.cond.wait_for(lambda: hub.closed or (hub.jpeg is not None and hub.jpeg_version > seen), timeout)
            if hub.closed or hub.jpeg is None or hub.jpeg_version <= seen:
                return None
            return hub.jpeg_version, hub.jpeg

    def _stream(self) -> None:
        hub = self.server.hub
        with hub.cond:
            viewer = hub.take_slot(self.connection)
        if viewer is None:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, f"{MAX_VIEWERS} viewers already\n".encode(), "text/plain")
            return
        self.close_connection = True
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            seen = 0
            while True:
                got = self._wait_jpeg(seen, timeout=1.0)
                with hub.cond:
                    if hub.closed:
                        return
                if got is None:
                    continue
                seen, jpeg = got
                viewer.writing_since = time.monotonic()
                self.wfile.write(f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}"
                                 "\r\n\r\n".encode() + jpeg + b"\r\n")
                self.wfile.flush()
                viewer.writing_since = None
                if viewer.evicted:
                    return
        finally:
            with hub.cond:
                hub.release(viewer)


class ViewerServer:
    """The HTTP server and its JPEG encoder thread.

    Args:
        host: the interface to listen on (default loopback only; "0.0.0.0" for every interface).
        port: the TCP port (0 = any free port; see :attr:`port` after :meth:`start`).
        max_fps: at most this many JPEGs per second are encoded.
        quality: JPEG quality (0-100).
        allow_hosts: host names the ``Host`` header may carry besides IP literals, localhost and ``host``
            (the names a browser reaches this machine by, e.g. ``mypi.local``).
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, max_fps: float = 30.0,
                 quality: int = 80, allow_hosts: tuple[str, ...] = ()) -> None:
        self.host = host
        self.port = port
        self.allowed_hosts = frozenset(h.strip().lower().rstrip(".") for h in (host, *allow_hosts))
        self.max_fps = max_fps
        self.quality = quality
        self.hub = _Hub()
        self._httpd: _Server | None = None
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def warning(self) -> str | None:
        """What to tell the user at start when the view is reachable from other machines (None on loopback)."""
        if is_loopback(self.host):
            return None
        return (f"the live view on {self.host}:{self.port} is reachable from other machines and has no "
                "authentication: anyone who can reach this address sees the camera and its readings; serve on "
                "127.0.0.1 (the default) or keep the network trusted (firewall, VPN)")

    def start(self) -> ViewerServer:
        """Bind and start serving.

        Raises:
            InferenceError: (exit 2) the port is in use, or the address cannot be bound.
        """
        _Server.address_family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            httpd = _Server((self.host, self.port), _Handler, max_connections=httpguard.MAX_CONNECTIONS,
                            allowed_hosts=self.allowed_hosts)
        except OSError as exc:
            why = ("already in use; pick another with --serve PORT" if exc.errno == errno.EADDRINUSE
                   else exc.strerror or str(exc))
            raise InferenceError(f"cannot serve on {self.host}:{self.port}: {why}") from None
        httpd.hub = self.hub
        self._httpd = httpd
        self.port = httpd.server_address[1]
        for target, name in ((httpd.serve_forever, "digitkit-http"), (self._encode_loop, "digitkit-jpeg")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def publish(self, reading: dict[str, Any], frame: np.ndarray) -> None:
        """Hand over the newest reading and annotated frame; never blocks on viewers."""
        hub = self.hub
        with hub.cond:
            hub.reading = reading
            hub.frame = frame
            hub.frame_version += 1
            hub.cond.notify_all()

    def _encode_loop(self) -> None:
        hub = self.hub
        done = 0
        last = 0.0
        params = [cv2.IMWRITE_JPEG_QUALITY, self.quality]
        while True:
            with hub.cond:
                hub.cond.wait_for(lambda d=done: hub.closed or hub.frame_version > d, timeout=1.0)
                if hub.closed:
                    return
                if hub.frame is None or hub.frame_version == done:
                    continue
                if hub.viewers == 0 and time.monotonic() - last < _IDLE_ENCODE_S and hub.jpeg is not None:
                    done = hub.frame_version  # nobody watches: skip this frame, wait for the next
                    continue
                frame, version = hub.frame, hub.frame_version
            ok, buf = cv2.imencode(".jpg", frame, params)  # outside the lock: viewers keep sending
            done = version
            now = time.monotonic()
            if ok:
                with hub.cond:
                    hub.jpeg = buf.tobytes()
                    hub.jpeg_version += 1
                    hub.cond.notify_all()
            wait = 1.0 / self.max_fps - (time.monotonic() - now) if self.max_fps > 0 else 0
            last = now
            if wait > 0:
                time.sleep(wait)

    def close(self) -> None:
        """Stop serving, wake and end every viewer, close the socket (idempotent)."""
        with self.hub.cond:
            self.hub.closed = True
            self.hub.cond.notify_all()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        for t in self._threads:
            t.join(timeout=2.0)
        self._threads = []

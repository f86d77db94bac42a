"""The browser view of ``digitkit camera --serve``: a page, the annotated MJPEG stream and the latest reading.

Standard library only (``http.server.ThreadingHTTPServer``): one thread per viewer. The processing loop
never waits for a viewer: it drops the newest annotated frame into a slot and returns. An encoder thread
turns the newest frame into a JPEG (at most ``max_fps`` per second, and only while somebody watches),
bumps a version counter and wakes the viewers; each viewer sends the newest JPEG it has not sent yet.
There is no per-viewer queue, so a viewer that stalls only stalls itself, and its socket timeout ends it.

Routes: ``/`` the page, ``/stream.mjpg`` the stream, ``/snapshot.jpg`` one frame, ``/reading`` JSON.
"""

from __future__ import annotations

import errno
import json
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np

from digitkit.runtime.errors import InferenceError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
WRITE_TIMEOUT_S = 5.0  # a viewer whose socket accepts nothing for this long is dropped
MAX_VIEWERS = 32  # streams at once; bounds the threads and the encoder's work on a small device
_IDLE_ENCODE_S = 1.0  # with no viewer, still refresh the snapshot this often
_BOUNDARY = "digitkitframe"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>digitkit camera</title>
<style>
 body { font-family: system-ui, sans-serif; background: #111; color: #eee; margin: 1em; }
 #reading { font-size: 3em; font-weight: bold; letter-spacing: .08em; }
 .stable { color: #4c4; } .unstable { color: #fa0; }
 img { max-width: 100%; border: 1px solid #444; display: block; margin-top: .5em; }
 small { color: #999; }
</style></head>
<body>
<div>reading: <span id="reading" class="unstable">-</span> <small id="info"></small></div>
<img id="stream" src="stream.mjpg" alt="annotated camera stream">
<script>
const img = document.getElementById("stream");
let shown = 0;  // multipart images fire "load" for every frame that arrives
img.addEventListener("load", () => { shown += 1; document.body.dataset.framesShown = shown; });
async function poll() {
  try {
    const r = await fetch("reading", {cache: "no-store"});
    if (r.ok) {
      const d = await r.json();
      const el = document.getElementById("reading");
      el.textContent = d.text || "-";
      el.className = d.stable ? "stable" : "unstable";
      document.getElementById("info").textContent =
        "frame " + d.frame + (d.stable ? " (stable)" : " (settling)") + ", " + d.latency_ms.toFixed(1) + " ms";
      document.body.dataset.frame = d.frame;
    }
  } catch (e) { /* the camera stopped; keep trying */ }
  document.body.dataset.naturalWidth = img.naturalWidth;
  setTimeout(poll, 250);
}
poll();
</script>
</body></html>
"""


def parse_address(text: str | int) -> tuple[str, int]:
    """``"8080"`` -> ("127.0.0.1", 8080); ``"0.0.0.0:8080"``, ``"[::1]:8080"`` name the host explicitly.

    Raises:
        InferenceError: no valid port (0-65535; 0 = any free port) in ``text``.
    """
    text = str(text).strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = DEFAULT_HOST, text
    host = host.strip("[]") or DEFAULT_HOST
    if not port_text.isdigit() or not 0 <= int(port_text) < 65536:  # 0 = any free port
        raise InferenceError(f"--serve {text!r} is not [HOST:]PORT (e.g. 8080 or 0.0.0.0:8080)")
    return host, int(port_text)


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
        self.closed = False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hub: _Hub


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # the camera's output is the readings, not an access log

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(WRITE_TIMEOUT_S)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
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
            if hub.viewers >= MAX_VIEWERS:
                full = True
            else:
                full = False
                hub.viewers += 1
                hub.cond.notify_all()  # the encoder starts encoding every frame again
        if full:
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
                self.wfile.write(f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}"
                                 "\r\n\r\n".encode() + jpeg + b"\r\n")
                self.wfile.flush()
        finally:
            with hub.cond:
                hub.viewers -= 1


class ViewerServer:
    """The HTTP server and its JPEG encoder thread.

    Args:
        host: the interface to listen on (default loopback only; "0.0.0.0" for every interface).
        port: the TCP port (0 = any free port; see :attr:`port` after :meth:`start`).
        max_fps: at most this many JPEGs per second are encoded.
        quality: JPEG quality (0-100).
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, max_fps: float = 30.0,
                 quality: int = 80) -> None:
        self.host = host
        self.port = port
        self.max_fps = max_fps
        self.quality = quality
        self.hub = _Hub()
        self._httpd: _Server | None = None
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> ViewerServer:
        """Bind and start serving.

        Raises:
            InferenceError: (exit 2) the port is in use, or the address cannot be bound.
        """
        _Server.address_family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            httpd = _Server((self.host, self.port), _Handler)
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

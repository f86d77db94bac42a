"""The browser view: page, /reading, /stream.mjpg, several viewers, a stalled viewer, port in use; and the
real console script served on a free loopback port, read by urllib and by headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from videos import synth_tiles, write_digit_video

import digitkit.runtime.server as server_mod
from digitkit.runtime.errors import InferenceError
from digitkit.runtime.server import ViewerServer, parse_address

DIGITKIT = str(Path(sys.executable).parent / "digitkit")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_mjpeg_frames(url: str, n: int, timeout: float = 10.0) -> list[np.ndarray]:
    """Read ``n`` JPEG parts from a multipart MJPEG stream and decode them."""
    frames = []
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        assert resp.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        while len(frames) < n:
            line = resp.readline()
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
                resp.readline()  # the blank line after the part headers
                frames.append(cv2.imdecode(np.frombuffer(resp.read(length), np.uint8), cv2.IMREAD_COLOR))
    return frames


def wait_json(url: str, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture()
def publishing_server():
    """A ViewerServer on a free loopback port fed 640x480 frames at ~60 fps by a background thread."""
    srv = ViewerServer("127.0.0.1", 0, max_fps=60).start()
    stop = threading.Event()
    published = [0]

    def feed() -> None:
        rng = np.random.default_rng(0)
        base = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)  # noise: JPEGs of a realistic size
        while not stop.is_set():
            frame = base.copy()
            cv2.putText(frame, str(published[0]), (50, 200), cv2.FONT_HERSHEY_SIMPLEX, 4, (0, 0, 0), 8)
            srv.publish({"frame": published[0], "text": "42", "stable": True, "digits": [], "latency_ms": 1.0},
                        frame)
            published[0] += 1
            time.sleep(1 / 60)

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    yield srv, published
    stop.set()
    t.join()
    srv.close()


def test_parse_address_defaults_to_loopback() -> None:
    assert parse_address("8080") == ("127.0.0.1", 8080)
    assert parse_address("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_address("[::1]:9000") == ("::1", 9000)
    for bad in ("http", "host:", "70000", "1.2.3.4:0x10"):
        with pytest.raises(InferenceError, match="--serve"):
            parse_address(bad)


def test_page_reading_stream_and_404(publishing_server) -> None:
    srv, _ = publishing_server
    page = urllib.request.urlopen(srv.url, timeout=5).read().decode()
    assert '<img id="stream" src="stream.mjpg"' in page and "reading" in page
    reading = wait_json(srv.url + "reading")
    assert reading["text"] == "42" and reading["stable"] is True
    frames = read_mjpeg_frames(srv.url + "stream.mjpg", 3)
    assert all(f is not None and f.shape == (480, 640, 3) for f in frames)
    snap = urllib.request.urlopen(srv.url + "snapshot.jpg", timeout=5).read()
    assert cv2.imdecode(np.frombuffer(snap, np.uint8), cv2.IMREAD_COLOR).shape == (480, 640, 3)
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(srv.url + "nope", timeout=5)
    assert exc.value.code == 404


def test_reading_before_the_first_frame_is_503() -> None:
    srv = ViewerServer("127.0.0.1", 0).start()
    try:
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(srv.url + "reading", timeout=5)
        assert exc.value.code == 503
    finally:
        srv.close()


@pytest.mark.timing
def test_a_stalled_viewer_blocks_neither_capture_nor_other_viewers(publishing_server, monkeypatch) -> None:
    monkeypatch.setattr(server_mod, "WRITE_TIMEOUT_S", 1.0)
    srv, published = publishing_server
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", srv.port))
    stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # ...and never reads a byte
    try:
        time.sleep(0.5)
        counts: dict[int, int] = {}

        def viewer(i: int) -> None:
            got = read_mjpeg_frames(srv.url + "stream.mjpg", 40, timeout=5)
            counts[i] = len(got)

        before = published[0]
        t0 = time.monotonic()
        threads = [threading.Thread(target=viewer, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        elapsed = time.monotonic() - t0
        assert counts == {0: 40, 1: 40}
        assert elapsed < 15  # 40 frames at <= 60 fps, even with the stalled viewer connected
        assert published[0] - before >= 30 * elapsed * 0.5  # the producer never waited for anyone
        # the stalled viewer is dropped once its socket refuses data for WRITE_TIMEOUT_S
        deadline = time.monotonic() + 15
        while srv.hub.viewers > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert srv.hub.viewers == 0
    finally:
        stalled.close()


def test_port_in_use_is_one_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(InferenceError, match=f"cannot serve on 127.0.0.1:{port}: already in use") as exc:
            ViewerServer("127.0.0.1", port).start()
        assert exc.value.exit_code == 2


# --- the real console script ---


@pytest.fixture(scope="module")
def slow_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A video that plays for ~12 s at its recorded 5 fps (a served file plays in real time)."""
    path = tmp_path_factory.mktemp("served") / "digits.avi"
    write_digit_video(path, ["42", "305", "7"] * 4, synth_tiles(), frames_per_number=5, fps=5.0, seed=5)
    return path


@pytest.fixture()
def served_camera(slow_video: Path, tiny_int8_tflite: Path):
    port = free_port()
    proc = subprocess.Popen(
        [DIGITKIT, "camera", "--source", str(slow_video), "--model", str(tiny_int8_tflite), "--json",
         "--serve", f"127.0.0.1:{port}", "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    yield proc, f"http://127.0.0.1:{port}/"
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.mark.timing
def test_console_script_serves_reading_and_stream_then_stops_cleanly_on_ctrl_c(served_camera) -> None:
    proc, url = served_camera
    reading = wait_json(url + "reading")
    assert set(reading) == {"frame", "text", "stable", "digits", "latency_ms"}
    frame = read_mjpeg_frames(url + "stream.mjpg", 1)[0]
    assert frame is not None and frame.shape == (480, 640, 3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "stopped: interrupted" in err and "fps" in err and "p95" in err
    assert f"serving the live view on {url}" in err
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines and [d["frame"] for d in lines] == list(range(len(lines)))
    with pytest.raises(urllib.error.URLError):  # the server is closed
        urllib.request.urlopen(url + "reading", timeout=2)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (make browser-deps: "
                    "apt-get install chromium chromium-driver)")
def test_headless_chromium_shows_the_stream_and_the_reading(served_camera) -> None:
    proc, url = served_camera
    wait_json(url + "reading")
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=4000", "--dump-dom", url],
            capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": profile},
        ).stdout
    assert 'data-natural-width="640"' in dom, dom[:2000]  # the <img> decoded frames of the stream
    shown = int(dom.split('data-frames-shown="', 1)[1].split('"', 1)[0])
    assert shown >= 1
    assert 'id="reading" class="' in dom and "frame " in dom  # the reading was polled from /reading

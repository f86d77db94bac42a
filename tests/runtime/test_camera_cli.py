"""``digitkit camera`` through CliRunner: JSON lines, summary, and every fault's exit code and message."""

from __future__ import annotations

import functools
import json
import socket
import threading
import time
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner
from videos import synth_tiles, write_digit_video

import digitkit.runtime.cli_camera as cli_camera
from digitkit.cli import app
from digitkit.runtime.camera import CameraConfig
from digitkit.runtime.server import ViewerServer

runner = CliRunner()


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli_video") / "digits.avi"
    write_digit_video(path, ["42", "", "305"], synth_tiles(), frames_per_number=6, seed=11)
    return path


def test_json_lines_and_summary(video: Path, tiny_int8_tflite: Path) -> None:
    result = runner.invoke(app, ["camera", "--source", str(video), "--model", str(tiny_int8_tflite), "--json",
                                 "--max-frames", "8", "--smooth", "2", "--threads", "1"])
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 8 and [d["frame"] for d in lines] == list(range(8))
    assert all(list(d) == ["frame", "text", "stable", "digits", "latency_ms"] for d in lines)
    assert lines[0]["stable"] is False and lines[1]["stable"] is True  # --smooth 2
    assert "8 frames" in result.stderr and "stopped: max frames" in result.stderr and "p50" in result.stderr


def test_without_json_the_summary_goes_to_stdout(video: Path, tiny_int8_tflite: Path) -> None:
    result = runner.invoke(app, ["camera", "--source", str(video), "--model", str(tiny_int8_tflite)])
    assert result.exit_code == 0, result.stderr
    assert "18 frames" in result.stdout and "stopped: end of file" in result.stdout


def test_unopenable_source_exit_2_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.avi"
    result = runner.invoke(app, ["camera", "--source", str(missing)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: cannot open video source '{missing}': no such file or device"


def test_port_in_use_exit_2_one_line(video: Path, tiny_int8_tflite: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(app, ["camera", "--source", str(video), "--model", str(tiny_int8_tflite),
                                     "--serve", str(port)])
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: cannot serve on 127.0.0.1:{port}: already in use; "
                                     "pick another with --serve PORT")


@pytest.mark.parametrize("args, message", [
    (["--roi", "1,2,3"], "--roi '1,2,3' is not x,y,w,h"),
    (["--roi", "900,900,50,50"], "lies outside the 640x480 frame"),
    (["--serve", "localhost:http"], "--serve 'localhost:http' is not [HOST:]PORT"),
    (["--width", "320"], "--width and --height go together"),
])
def test_bad_options_exit_2(video: Path, tiny_int8_tflite: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["camera", "--source", str(video), "--model", str(tiny_int8_tflite), *args])
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.timing
def test_stream_that_dies_reconnects_then_exits_1_with_summary(video: Path, tiny_int8_tflite: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """An http:// MJPEG stream (our own server) that stops: reconnect attempts fail, the run ends cleanly."""
    monkeypatch.setattr(cli_camera, "CameraConfig", functools.partial(CameraConfig, reconnect_seconds=1.0))
    upstream = ViewerServer("127.0.0.1", 0, max_fps=100).start()
    frame = cv2.VideoCapture(str(video)).read()[1]
    sent = threading.Event()

    def feed() -> None:
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            upstream.publish({}, frame.copy())
            time.sleep(0.03)
            if upstream.hub.viewers:
                sent.set()
        upstream.close()  # the camera goes away for good

    threading.Thread(target=feed, daemon=True).start()
    t0 = time.monotonic()
    result = runner.invoke(app, ["camera", "--source", f"{upstream.url}stream.mjpg", "--model",
                                 str(tiny_int8_tflite), "--json"])
    assert sent.is_set()
    assert result.exit_code == 1, result.stderr
    assert "stopped: source lost" in result.stderr
    assert f"error: video source '{upstream.url}stream.mjpg' stopped delivering frames; reconnecting for 1 s failed" \
        in result.stderr
    assert len(result.stdout.splitlines()) >= 3  # frames were read before the stream died
    assert time.monotonic() - t0 < 30

"""``digitkit camera``: a thin skin over :func:`digitkit.runtime.camera.run_camera` (registered by runtime/cli.py)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from digitkit.errors import ExitCode
from digitkit.runtime.camera import CameraConfig, FrameReading, parse_roi, run_camera

_DEFAULTS = CameraConfig()


def camera(
    source: Annotated[str, typer.Option(
        "--source", metavar="SOURCE",
        help="Camera index (0), device path (/dev/video0), video file, or stream URL (rtsp://, http://).",
    )] = _DEFAULTS.source,
    model: Annotated[str | None, typer.Option(
        "--model", metavar="NAME|FILE",
        help="A shipped model, fast (the default) or accurate, or a digit .tflite.")] = None,
    width: Annotated[int | None, typer.Option("--width", metavar="PX", min=1,
                                                     help="Frame width to request (and resize to).")] = None,
    height: Annotated[int | None, typer.Option("--height", metavar="PX", min=1,
                                                      help="Frame height to request.")] = None,
    serve: Annotated[str | None, typer.Option(
        "--serve", metavar="[HOST:]PORT",
        help="Browser view on http://HOST:PORT/ (HOST defaults to 127.0.0.1: name 0.0.0.0 to be reachable "
             "from other machines).",
    )] = None,
    allow_host: Annotated[list[str] | None, typer.Option(
        "--allow-host", metavar="NAME",
        help="A host name the browser view may be reached by besides its address, IP addresses and localhost "
             "(e.g. mypi.local); repeatable. Other Host headers get 403 (DNS rebinding).",
    )] = None,
    show: Annotated[bool, typer.Option("--show", help="OpenCV window (needs opencv-python, not -headless).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON line per processed frame on stdout.")] = False,
    max_frames: Annotated[int | None, typer.Option("--max-frames", metavar="N", min=1,
                                                          help="Stop after N frames.")] = None,
    roi: Annotated[str | None, typer.Option("--roi", metavar="x,y,w,h", help="Read digits only inside this region.")]
    = None,
    threads: Annotated[int | None, typer.Option("--threads", metavar="N", min=1, help="Interpreter threads.")] = None,
    smooth: Annotated[int, typer.Option(
        "--smooth", metavar="K", min=1, help="Frames that must agree before a reading is shown as stable (1 = off).",
    )] = _DEFAULTS.smooth,
) -> None:
    """Read digits live from a camera, a video file or a stream; optionally serve a browser view.

    Stops at the end of a file, after --max-frames, or on Ctrl-C, then prints a summary (stderr with --json).

    Exit codes: 0 ok · 1 the source stopped and reconnecting failed · 2 bad option, source, model or port.
    """
    config = CameraConfig(source=source, model=model, width=width, height=height,
                          serve=serve, allow_hosts=tuple(allow_host or ()), show=show, max_frames=max_frames,
                          roi=parse_roi(roi), threads=threads, smooth=smooth)
    info = sys.stderr if json_out else sys.stdout

    def print_reading(reading: FrameReading) -> None:
        print(json.dumps(reading.to_dict()), flush=True)

    def print_url(url: str) -> None:
        print(f"serving the live view on {url}  (Ctrl-C to stop)", file=info, flush=True)

    summary = run_camera(config, on_frame=print_reading if json_out else None, on_start=print_url)
    for line in summary.lines():
        print(line, file=info, flush=True)
    if summary.stop_reason == "source lost":
        typer.echo(f"error: video source {source!r} stopped delivering frames; reconnecting for "
                   f"{config.reconnect_seconds:g} s failed", err=True)
        raise typer.Exit(ExitCode.SOME_FAILED)

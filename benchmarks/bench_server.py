"""Load on the browser view: N viewers of ``/stream.mjpg`` for S seconds, loopback only.

The camera side runs in this process: :func:`digitkit.runtime.camera.run_camera` with the real classifier and
``--serve 127.0.0.1:<free port>``, fed by a looping "live camera" of generated 640x480 frames at 30 fps.
The viewers run in a child process (threads reading the multipart stream and counting JPEGs), so the
memory sampled here (VmRSS every 0.5 s) is the camera + server's alone.

    .venv/bin/python benchmarks/bench_server.py [--viewers 20] [--seconds 60] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "runtime"))

from videos import read_frames, synth_tiles, write_digit_video  # noqa: E402

from digitkit.runtime.camera import CameraConfig, run_camera  # noqa: E402
from digitkit.runtime.fileio import atomic_write_json  # noqa: E402


@dataclass(frozen=True)
class ServerBench:
    viewers: int
    seconds: float
    camera_fps: float  # frames the camera loop processed per second
    viewer_fps_median: float  # JPEGs per second each viewer received
    viewer_fps_min: float
    viewer_mbit_s_total: float
    rss_mb_start: float  # before the viewers connect
    rss_mb_max: float
    rss_mb_end: float
    platform: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class LoopingCamera:
    """A live camera that shows the same few frames round and round at ``fps``."""

    def __init__(self, frames: list[np.ndarray], fps: float = 30.0) -> None:
        self.frames, self.period, self.i, self.next_at = frames, 1.0 / fps, 0, time.monotonic()

    def read(self) -> tuple[bool, np.ndarray]:
        self.next_at += self.period
        time.sleep(max(0.0, self.next_at - time.monotonic()))
        self.i += 1
        return True, self.frames[self.i % len(self.frames)].copy()

    def release(self) -> None:
        pass

    def get(self, prop: int) -> float:
        return 30.0


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _viewers(url: str, n: int, seconds: float, out: mp.Queue) -> None:
    counts = [0] * n
    nbytes = [0] * n
    end = time.monotonic() + seconds

    def view(i: int) -> None:
        with urllib.request.urlopen(url, timeout=10) as resp:
            while time.monotonic() < end:
                line = resp.readline()
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
                    resp.readline()
                    nbytes[i] += len(resp.read(length))
                    counts[i] += 1

    threads = [threading.Thread(target=view, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((counts, nbytes))


def main(argv: list[str] | None = None) -> ServerBench:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--viewers", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "loop.avi"
        write_digit_video(video, ["42", "305", "9186", "7"], synth_tiles(), frames_per_number=8)
        frames = read_frames(video)

    urls: list[str] = []
    started = threading.Event()
    stop = threading.Event()
    result: dict[str, object] = {}

    def camera() -> None:
        cfg = CameraConfig(source="0", model=args.model, serve="127.0.0.1:0", threads=1)
        result["summary"] = run_camera(cfg, opener=lambda: LoopingCamera(frames),
                                       on_start=lambda u: (urls.append(u), started.set()), stop=stop)

    cam = threading.Thread(target=camera)
    cam.start()
    started.wait(30)
    time.sleep(2.0)  # the classifier warms up before anybody watches
    rss_start = rss_mb()
    samples = [rss_start]
    q: mp.Queue = mp.get_context("spawn").Queue()
    child = mp.get_context("spawn").Process(target=_viewers, args=(urls[0] + "stream.mjpg", args.viewers,
                                                                   args.seconds, q))
    t0 = time.monotonic()
    child.start()
    while child.is_alive() and time.monotonic() - t0 < args.seconds + 30:
        samples.append(rss_mb())
        time.sleep(0.5)
        if not q.empty():
            break
    counts, nbytes = q.get(timeout=60)
    child.join(timeout=10)
    elapsed = args.seconds
    stop.set()
    cam.join()
    summary = result["summary"]
    per_viewer = [c / elapsed for c in counts]
    bench = ServerBench(
        viewers=args.viewers, seconds=elapsed, camera_fps=round(summary.mean_fps, 1),  # type: ignore[attr-defined]
        viewer_fps_median=round(statistics.median(per_viewer), 1), viewer_fps_min=round(min(per_viewer), 1),
        viewer_mbit_s_total=round(sum(nbytes) * 8 / elapsed / 1e6, 1),
        rss_mb_start=round(rss_start, 1), rss_mb_max=round(max(samples), 1), rss_mb_end=round(rss_mb(), 1),
        platform=platform.platform(),
    )
    print(f"{bench.viewers} viewers x {bench.seconds:.0f} s on loopback, camera looping at 30 fps")
    for key, value in bench.to_dict().items():
        if key not in ("viewers", "seconds", "platform"):
            print(f"{key:<22}{value:>10}")
    if args.out:
        atomic_write_json(args.out, bench.to_dict())
    return bench


if __name__ == "__main__":
    main()

"""How fast ``digitkit camera`` processes frames: preprocess + segment + classify + draw, on ONE core.

A 640x480 video of 1-4 digit numbers (dark ink on paper, lighting gradient, motion, noise; MNIST test
digits when the real data is available, else synthetic ones) is generated and decoded into memory; then
each frame goes through the camera's own per-frame path (:class:`digitkit.runtime.camera.FrameProcessor` with
drawing on) several times. The process is pinned to CPU 0 and the interpreter gets one thread.

    .venv/bin/python benchmarks/bench_camera.py [--model FILE] [--frames 300] [--passes 5] [--out FILE.json]

Reports per-frame latency p50/p90/p99/mean and frames/s per pass (the median pass is the headline), the
same per CPU-second of the process (robust when other processes share the core), plus an end-to-end
``run_camera`` on the file (decoding on the capture thread, sharing the same core).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "runtime"))

from videos import mnist_tiles, read_frames, synth_tiles, write_digit_video  # noqa: E402

from digitkit.runtime.camera import CameraConfig, FrameProcessor, run_camera  # noqa: E402
from digitkit.runtime.classifier import DEFAULT_MODEL, DigitClassifier  # noqa: E402
from digitkit.runtime.fileio import atomic_write_json  # noqa: E402


@dataclass(frozen=True)
class CameraBench:
    model: str
    model_bytes: int
    backend: str
    threads: int
    cpus: list[int]
    platform: str
    frames: int
    digits_per_frame: float
    passes: int
    fps_per_pass: list[float]
    fps_median: float
    cpu_fps_per_pass: list[float]  # frames per CPU-second of this process: what an idle core would do
    cpu_fps_median: float
    latency_ms_p50: float
    latency_ms_p90: float
    latency_ms_p99: float
    latency_ms_mean: float
    end_to_end_fps: float
    read_right: float  # fraction of frames whose raw reading equals the written number

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def make_video(path: Path, n_frames: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    data = Path(os.environ.get("DIGITKIT_DATA", REPO.parent / "shared" / "data" / "mnist"))
    try:
        from digitkit.toolkit.data import load_mnist  # the benchmark may use the toolkit; the runtime never does

        ds = load_mnist(data)
        tiles = mnist_tiles(ds.x_test, ds.y_test, per_label=50)
    except Exception:  # noqa: BLE001 - no real data here: synthetic digits
        tiles = synth_tiles()
    per = 10
    numbers = ["".join(str(d) for d in rng.integers(0, 10, int(rng.integers(1, 5)))) for _ in range(n_frames // per)]
    return write_digit_video(path, numbers, tiles, frames_per_number=per, seed=seed)


def main(argv: list[str] | None = None) -> CameraBench:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--out", default=None)
    ap.add_argument("--cut-only", action="store_true", help="touching digits only cut, not read whole first")
    args = ap.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []

    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "bench.avi"
        truth = make_video(video, args.frames)
        frames = read_frames(video)

        clf = DigitClassifier(model_path=args.model, threads=1, read_whole=not args.cut_only)
        proc = FrameProcessor(clf.classify, smooth=5, draw=True)
        for img in frames[:20]:  # warm-up: interpreter, allocations, caches
            proc(0, img.copy())
        times: list[int] = []
        fps_per_pass = []
        cpu_fps_per_pass = []
        right = 0
        n_digits = 0
        for p in range(args.passes):
            start, cpu_start = time.perf_counter_ns(), time.process_time_ns()
            for i, img in enumerate(frames):
                frame = img.copy()  # the camera hands over a fresh array too; drawing writes on it
                t0 = time.perf_counter_ns()
                reading, _ = proc(i, frame)
                times.append(time.perf_counter_ns() - t0)
                if p == 0:
                    right += reading.raw_text == truth[i]
                    n_digits += len(reading.digits)
            fps_per_pass.append(len(frames) / ((time.perf_counter_ns() - start) / 1e9))
            cpu_fps_per_pass.append(len(frames) / ((time.process_time_ns() - cpu_start) / 1e9))

        e2e = run_camera(CameraConfig(source=str(video), model=args.model, threads=1))

    ms = np.array(times) / 1e6
    result = CameraBench(
        model=args.model, model_bytes=Path(args.model).stat().st_size, backend=clf.model.backend, threads=1,
        cpus=cpus, platform=platform.platform(), frames=len(frames), digits_per_frame=n_digits / len(frames),
        passes=args.passes, fps_per_pass=[round(f, 1) for f in fps_per_pass],
        fps_median=round(statistics.median(fps_per_pass), 1),
        cpu_fps_per_pass=[round(f, 1) for f in cpu_fps_per_pass],
        cpu_fps_median=round(statistics.median(cpu_fps_per_pass), 1),
        latency_ms_p50=round(float(np.percentile(ms, 50)), 3), latency_ms_p90=round(float(np.percentile(ms, 90)), 3),
        latency_ms_p99=round(float(np.percentile(ms, 99)), 3), latency_ms_mean=round(float(ms.mean()), 3),
        end_to_end_fps=round(e2e.mean_fps, 1), read_right=round(right / len(frames), 4),
    )
    print(f"camera frames 640x480, {result.digits_per_frame:.2f} digits/frame, 1 interpreter thread, CPUs {cpus}, "
          f"{result.backend}, model {result.model_bytes / 1024:.0f} KiB")
    print(f"{'fps (median pass)':<22}{result.fps_median:>10}   passes: {result.fps_per_pass}")
    print(f"{'fps per CPU-second':<22}{result.cpu_fps_median:>10}   passes: {result.cpu_fps_per_pass}"
          "   (wall fps suffers when other processes share CPU 0; this does not)")
    for key in ("latency_ms_p50", "latency_ms_p90", "latency_ms_p99", "latency_ms_mean"):
        print(f"{key:<22}{getattr(result, key):>10}")
    print(f"{'end-to-end run fps':<22}{result.end_to_end_fps:>10}   (decode on the capture thread, same core)")
    print(f"{'frames read right':<22}{result.read_right:>10.1%}")
    if args.out:
        atomic_write_json(args.out, result.to_dict())
    return result


if __name__ == "__main__":
    main()

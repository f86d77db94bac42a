"""How fast and how light ``digitkit classify`` is: throughput on the 10 000 MNIST test images as PNG files
(one core, one interpreter thread), cold start and peak RSS of the console script on one image, and the
accuracy of the readings next to the model's own test accuracy (both polarities). Issue 7: the console
script's peak RSS over 1 000 and 10 000 files (it must stay flat), and the throughput with every tenth file
bad (empty, text, truncated) next to all good, in alternating passes (a bad file must not slow the rest).

    python benchmarks/bench_classify.py --model runs/seed/int8.tflite [--out runs/bench_classify.json]

Bars (issue 4): >= 2000 images/s once started, cold start <= 1 s, peak RSS <= 150 MB.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from photos import emit  # noqa: E402  (benchmarks/ is not a package)


@dataclass(frozen=True)
class ClassifyBench:
    images: int
    images_per_s: float  # best of the timed passes, PNG decode + preprocessing + inference
    images_per_s_runs: tuple[float, ...]
    model_accuracy: float  # the interpreter on the raw test arrays
    classify_accuracy: float  # classify on the PNGs, MNIST polarity
    classify_accuracy_inverted: float  # classify on the PNGs, black digit on white
    cold_start_s_p50: float
    cold_start_s_runs: tuple[float, ...]
    peak_rss_mb: float
    folder_peak_rss_mb: dict[int, float]  # console script, --json, over the first N test PNGs
    mixed_images_per_s: float  # best pass, every tenth file bad: files (good and bad) per second
    mixed_good_per_s: float  # the same passes: good images read per second
    good_only_images_per_s: float  # all good, measured in the same alternating passes
    threads: int
    cpu_affinity: int
    backend: str
    model: str
    model_bytes: int
    platform: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def write_pngs(images: np.ndarray, folder: Path) -> list[str]:
    paths = []
    for i, img in enumerate(images):
        p = folder / f"{i:05d}.png"
        cv2.imwrite(str(p), img)
        paths.append(str(p))
    return paths


def accuracy(readings: list, labels: np.ndarray) -> float:
    return float(np.mean([r.text == str(int(y)) for r, y in zip(readings, labels, strict=True)]))


# A small launcher process times the run and reads its peak RSS: ru_maxrss of a child forked straight
# from this (big) benchmark process would count the pages it inherited before exec.
_LAUNCHER = """
import os, sys, time
t = time.perf_counter()
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ, file_actions=[
    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0), (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)])
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - t, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def launch(args: list[str], ok: tuple[int, ...] = (0,)) -> tuple[float, float]:
    """Wall time and peak RSS (MB) of ``digitkit ARGS`` in a fresh process."""
    exe = str(Path(sys.executable).parent / "digitkit")
    out = subprocess.run([sys.executable, "-c", _LAUNCHER, exe, *args],
                         capture_output=True, text=True, check=True).stdout.split()
    if int(out[2]) not in ok:
        raise SystemExit(f"digitkit {' '.join(args[:2])} failed with exit code {out[2]}")
    return float(out[0]), int(out[1]) / 1024  # Linux: KiB


def cold_start(model: str, image: str, runs: int) -> tuple[list[float], float]:
    """Wall time and peak RSS of ``digitkit classify IMAGE --json`` in fresh processes."""
    runs_ = [launch(["classify", image, "--model", model, "--json"]) for _ in range(runs)]
    return [t for t, _ in runs_], max(rss for _, rss in runs_)


def folder_rss(model: str, paths: list[str], sizes: tuple[int, ...], root: Path) -> dict[int, float]:
    """Peak RSS of ``digitkit classify FOLDER --json`` over folders of the first N PNGs (hard links)."""
    out = {}
    for n in sizes:
        folder = root / f"first{n}"
        folder.mkdir()
        for p in paths[:n]:
            os.link(p, folder / Path(p).name)
        out[n] = launch(["classify", str(folder), "--model", model, "--json", "--threads", "1"])[1]
    return out


def with_bad_files(paths: list[str], root: Path) -> tuple[list[str], int]:
    """The paths with every tenth replaced by a bad file (empty, text, truncated PNG, in turn)."""
    root.mkdir()
    mixed, bad = list(paths), 0
    for i in range(0, len(paths), 10):
        data = Path(paths[i]).read_bytes()
        kind = (b"", b"not an image, just text\n", data[: len(data) // 2])[bad % 3]
        mixed[i] = str(root / f"bad{i:05d}.png")
        Path(mixed[i]).write_bytes(kind)
        bad += 1
    return mixed, bad


def run(model: str, data_dir: str, passes: int, cold_runs: int) -> ClassifyBench:
    from digitkit.runtime.classifier import DigitClassifier, ReadError
    from digitkit.toolkit.data import load_mnist

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, honestly
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    d = load_mnist(data_dir)
    x, y = d.x_test, d.y_test
    clf = DigitClassifier(model_path=model, threads=1)
    model_acc = float(np.mean(clf.model.predict(x) == y))
    with tempfile.TemporaryDirectory() as tmp:
        plain, inv = Path(tmp, "mnist"), Path(tmp, "inverted")
        plain.mkdir()
        inv.mkdir()
        paths = write_pngs(x, plain)
        inv_paths = write_pngs(255 - x, inv)
        list(clf.classify_many(paths[:500]))  # warm up: page cache, allocator, interpreter
        rates, readings = [], []
        for _ in range(passes):
            t = time.perf_counter_ns()
            readings = list(clf.classify_many(paths))
            rates.append(len(paths) / ((time.perf_counter_ns() - t) / 1e9))
        acc = accuracy(readings, y)
        acc_inv = accuracy(list(clf.classify_many(inv_paths)), y)
        mixed, n_bad = with_bad_files(paths, Path(tmp, "bad"))
        good_rates, mixed_rates = [], []
        for _ in range(passes):  # alternating, so load from other work hits both alike
            for which, rates_ in ((paths, good_rates), (mixed, mixed_rates)):
                t = time.perf_counter_ns()
                failed = sum(isinstance(r, ReadError) for r in clf.classify_many(which))
                rates_.append(len(which) / ((time.perf_counter_ns() - t) / 1e9))
                assert failed == (n_bad if which is mixed else 0), failed
        times, rss = cold_start(model, paths[0], cold_runs)
        folder = folder_rss(model, paths, (1_000, len(paths)), Path(tmp))
    return ClassifyBench(images=len(x), images_per_s=max(rates), images_per_s_runs=tuple(rates),
                         model_accuracy=model_acc, classify_accuracy=acc, classify_accuracy_inverted=acc_inv,
                         cold_start_s_p50=statistics.median(times), cold_start_s_runs=tuple(times),
                         peak_rss_mb=rss, folder_peak_rss_mb=folder, mixed_images_per_s=max(mixed_rates),
                         mixed_good_per_s=max(mixed_rates) * (len(mixed) - n_bad) / len(mixed),
                         good_only_images_per_s=max(good_rates), threads=1, cpu_affinity=cores,
                         backend=clf.model.backend, model=model,
                         model_bytes=Path(model).stat().st_size, platform=platform.platform())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "runtime/models/digitkit_seed_int8.tflite"))
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared/data/mnist"))
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--cold-runs", type=int, default=5)
    ap.add_argument("--out", help="write the result as JSON here")
    a = ap.parse_args()
    res = run(a.model, a.data_dir, a.passes, a.cold_runs).to_dict()
    res["bars"] = {"images_per_s>=2000": res["images_per_s"] >= 2000, "cold_start<=1s": res["cold_start_s_p50"] <= 1.0,
                   "peak_rss<=150MB": res["peak_rss_mb"] <= 150,
                   "folder_rss_flat<=5MB": max(res["folder_peak_rss_mb"].values())
                   - min(res["folder_peak_rss_mb"].values()) <= 5,
                   "accuracy_within_0.2pp": abs(res["classify_accuracy"] - res["model_accuracy"]) <= 0.002
                   and abs(res["classify_accuracy_inverted"] - res["model_accuracy"]) <= 0.002}
    emit(res, a.out)


if __name__ == "__main__":
    main()

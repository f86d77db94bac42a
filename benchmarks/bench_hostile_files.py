"""Hostile files (issue 15): the peak memory of real ``digitkit`` runs given a gzip bomb, a FIFO, /dev/zero,
a sparse 1.5 GB ".png", and tall 89 MP pictures with --save-annotated.

Each case runs ``python -m digitkit`` in a child process and reads its peak RSS from ``wait4`` (ru_maxrss),
so the figure is that run's alone; a case still running after ``--timeout`` seconds is killed and reported
as such. Everything is generated in a temp folder and deleted afterwards.

``--before DIR`` also runs every case with another version of the code first on PYTHONPATH, side by side:
a folder holding a ``digitkit`` package whose runtime/toolkit/converters are that version's (see the README's
Reliability section for the commands that build it from commit 9eab142). /dev/zero is only given to this
version: the one before read it until MemoryError.

    .venv/bin/python benchmarks/bench_hostile_files.py [--bomb-gib 2] [--tall 8] [--before DIR] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from synth import write_idx_folder  # noqa: E402

from digitkit.runtime.fileio import atomic_write_json  # noqa: E402

_PEAK_RSS = """
import os, signal, sys, time
limit = float(sys.argv.pop(1))
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)
end = time.monotonic() + limit
while True:
    done, status, usage = os.wait4(pid, os.WNOHANG)
    if done:
        break
    if time.monotonic() > end:
        os.kill(pid, signal.SIGKILL)
        _, status, usage = os.wait4(pid, 0)
        status = 124 << 8  # like timeout(1)
        break
    time.sleep(0.05)
print(usage.ru_maxrss, os.waitstatus_to_exitcode(status), file=sys.stderr)
"""


@dataclass(frozen=True)
class Case:
    version: str  # "after" (this tree) or "before" (--before)
    name: str
    command: str
    exit_code: int
    peak_rss_mb: float
    seconds: float
    output: str  # the first line of stdout, or the error line (or the last line of a traceback)


def run(version: str, name: str, args: list[str], cwd: Path, pythonpath: str | None, limit: float) -> Case:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(limit), sys.executable, "-m", "digitkit", *args],
                         capture_output=True, text=True, cwd=cwd, env=env, timeout=limit + 60)
    seconds = time.monotonic() - t0
    *rest, rss_kib, code = res.stderr.rsplit(None, 2)
    err = rest[0] if rest else ""
    said = ([line for line in err.splitlines() if line.startswith("error:")] or res.stdout.splitlines()[:1]
            or err.splitlines()[-1:] or ["(nothing)"])
    if int(code) == 124:
        said = [f"killed after {limit:g} s; printed {len(res.stdout.splitlines())} lines"]
    command = " ".join(a.replace(str(cwd) + "/", "") for a in args)
    return Case(version, name, f"digitkit {command}", int(code), round(int(rss_kib) / 1024, 1), round(seconds, 1),
                said[0][:300])


def gzip_bomb(path: Path, gib: float) -> None:
    """A valid (1200, 28, 28) IDX header followed by ``gib`` GiB of zeros, as one gzip member."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(path, "wb") as fh:
        fh.write(comp.compress(struct.pack(">HBBIII", 0, 8, 3, 1200, 28, 28)))
        zeros = bytes(1 << 20)
        for _ in range(int(gib * 1024)):
            fh.write(comp.compress(zeros))
        fh.write(comp.flush())


def tall_page(path: Path) -> None:
    """A genuine 1366 x 65 500 JPEG (89.47 MP, just under --max-pixels): a white strip with "721" on top."""
    page = np.full((65_500, 1366), 245, np.uint8)
    cv2.putText(page, "721", (100, 300), cv2.FONT_HERSHEY_SIMPLEX, 8, 20, 30)
    cv2.imwrite(str(path), page, [cv2.IMWRITE_JPEG_QUALITY, 90])


def main(argv: list[str] | None = None) -> list[Case]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bomb-gib", type=float, default=2.0)
    ap.add_argument("--tall", type=int, default=8, help="tall 89 MP pictures for --save-annotated")
    ap.add_argument("--before", default=None, help="PYTHONPATH of another version to run side by side")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds before a case is killed")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = write_idx_folder(root / "data", n_train=1200, n_test=300)
        gzip_bomb(data / "train-images-idx3-ubyte.gz", args.bomb_gib)
        size = (data / "train-images-idx3-ubyte.gz").stat().st_size
        model = str(REPO / "runtime" / "models" / "digitkit_seed_int8.tflite")
        os.mkfifo(root / "x.png")
        with open(root / "sparse.png", "wb") as fh:
            fh.truncate(1_500_000_000)
        cv2.imwrite(str(root / "good.png"), np.full((100, 100), 240, np.uint8))
        tall = root / "tall"
        tall.mkdir()
        tall_page(tall / "p0.jpg")
        for i in range(1, args.tall):
            os.link(tall / "p0.jpg", tall / f"p{i}.jpg")
        plan = [
            (f"gzip bomb: {size / 1e6:.1f} MB .gz -> {args.bomb_gib:g} GiB",
             ["evaluate", model, "--data-dir", str(data), "--json"], True),
            ("a FIFO named x.png, then a good file", ["classify", str(root / "x.png"), str(root / "good.png"),
                                                      "--json"], True),
            ("/dev/zero", ["classify", "/dev/zero", "--json"], False),
            ("a sparse 1.5 GB file named .png", ["classify", str(root / "sparse.png"), "--json"], True),
            (f"{args.tall} JPEGs of 1366x65500 ({(tall / 'p0.jpg').stat().st_size / 1e3:.0f} KB each) with "
             "--save-annotated", ["classify", str(tall), "--save-annotated", str(root / "ann"), "--json"], True),
        ]
        for name, cmd, safe_before in plan:
            if args.before and safe_before:
                cases.append(run("before", name, cmd, root, args.before, args.timeout))
                if (root / "ann").exists():
                    shutil.rmtree(root / "ann")
            cases.append(run("after", name, cmd, root, None, args.timeout))
    for c in cases:
        print(f"[{c.version}] {c.name}\n  {c.command}\n  exit {c.exit_code}, peak RSS {c.peak_rss_mb} MB, "
              f"{c.seconds} s: {c.output}")
    if args.out:
        atomic_write_json(args.out, {"platform": platform.platform(), "cases": [asdict(c) for c in cases]})
    return cases


if __name__ == "__main__":
    main()

"""Hostile clients against the live view (issue 15): a header flood, a burst of connects, a drip-fed request.

The server runs in a child process (the ViewerServer of ``digitkit camera --serve`` on 127.0.0.1, fed a
640x480 frame 30 times a second), so the memory read from /proc (VmRSS now, VmHWM the peak) is the server's
alone. The clients run here, on loopback only, each loop bounded.

- ``flood``: C connections each send a request line and H headers of S bytes (default 200 x 98 x 65 000:
  the stdlib's own limits allow 100 lines of 64 KB, i.e. 6.5 MB per connection); server RSS before, peak,
  and 5 s after.
- ``burst``: N clients connect at the same instant and GET /reading; how many are answered (200, or 503
  when every connection slot is taken), how many get no answer, and how fast.
- ``drip``: one client sends a byte every D seconds; how long until the server answers and closes.

``--server FILE`` loads another version of runtime/server.py to compare side by side, e.g. the one before
issue 15: ``git show 9eab142:runtime/server.py > /tmp/server_before.py``.

    .venv/bin/python benchmarks/bench_hostile_server.py [--server FILE] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

_CHILD = r"""
import importlib.util, sys, threading, time
import numpy as np
path = sys.argv[1]
if path:
    spec = importlib.util.spec_from_file_location("server_under_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
else:
    import digitkit.runtime.server as mod
srv = mod.ViewerServer("127.0.0.1", 0, max_fps=30).start()
frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
def feed():
    n = 0
    while True:
        srv.publish({"frame": n, "text": "42", "stable": True, "digits": [], "latency_ms": 1.0}, frame)
        n += 1
        time.sleep(1 / 30)
threading.Thread(target=feed, daemon=True).start()
time.sleep(1.0)
print(srv.port, flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
"""


@dataclass(frozen=True)
class HostileBench:
    server: str
    flood_connections: int
    flood_headers: int
    flood_header_bytes: int
    flood_rss_mb_before: float
    flood_rss_mb_peak: float
    flood_rss_mb_after_5s: float
    flood_seconds: float
    flood_answers: dict[str, int]
    burst_clients: int
    burst_answers: dict[str, int]
    burst_p50_s: float
    burst_max_s: float
    drip_interval_s: float
    drip_closed_after_s: float
    drip_answer: str
    stderr_lines: int  # what the server printed meanwhile
    tracebacks: int
    platform: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _proc_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _status(data: bytes) -> str:
    return data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/1.") and b" " in data else "none"


def _count(answers: list[str]) -> dict[str, int]:
    return {k: answers.count(k) for k in sorted(set(answers))}


def flood(port: int, connections: int, headers: int, size: int) -> list[str]:
    line = b"X-Flood: " + b"a" * (size - 11) + b"\r\n"
    answers: list[str] = []

    def one() -> None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                try:
                    for _ in range(headers):
                        s.sendall(line)
                    s.sendall(b"\r\n")
                except OSError:
                    pass  # the server stopped reading and answered (or reset)
                answers.append(_status(s.recv(4096)))
        except OSError as exc:
            answers.append(type(exc).__name__)

    threads = [threading.Thread(target=one) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return answers


def burst(port: int, clients: int, timeout: float) -> tuple[list[str], list[float]]:
    barrier = threading.Barrier(clients)
    answers: list[str] = []
    times: list[float] = []

    def one() -> None:
        barrier.wait()
        t0 = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
                s.sendall(b"GET /reading HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                got = s.recv(4096)
            answers.append(_status(got))
        except OSError as exc:
            answers.append(type(exc).__name__)
        times.append(time.monotonic() - t0)

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout + 30)
    return answers, times


def drip(port: int, interval: float, limit: float) -> tuple[float, str]:
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"z" * 1000
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as s:
        s.settimeout(interval)
        for byte in request:
            if time.monotonic() - t0 > limit:
                return time.monotonic() - t0, "still open"
            try:
                s.send(bytes([byte]))
                got = s.recv(4096)
                return time.monotonic() - t0, _status(got) if got else "closed"
            except TimeoutError:
                continue
            except OSError as exc:
                return time.monotonic() - t0, type(exc).__name__
    return time.monotonic() - t0, "still open"


def main(argv: list[str] | None = None) -> HostileBench:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default="", help="another runtime/server.py to load (default: the installed one)")
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument("--headers", type=int, default=98)
    ap.add_argument("--header-bytes", type=int, default=65_000)
    ap.add_argument("--burst", type=int, default=200)
    ap.add_argument("--burst-timeout", type=float, default=25.0)
    ap.add_argument("--drip-interval", type=float, default=2.0)
    ap.add_argument("--drip-limit", type=float, default=40.0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    err = tempfile.TemporaryFile()
    child = subprocess.Popen([sys.executable, "-c", _CHILD, args.server], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        port = int(child.stdout.readline())  # type: ignore[union-attr]
        before = _proc_mb(child.pid, "VmRSS")
        t0 = time.monotonic()
        flood_answers = flood(port, args.connections, args.headers, args.header_bytes)
        flood_s = time.monotonic() - t0
        peak = _proc_mb(child.pid, "VmHWM")
        time.sleep(5.0)
        after = _proc_mb(child.pid, "VmRSS")
        burst_answers, burst_times = burst(port, args.burst, args.burst_timeout)
        drip_s, drip_answer = drip(port, args.drip_interval, args.drip_limit)
    finally:
        child.stdin.close()  # type: ignore[union-attr]
        child.kill()
        child.wait()
    err.seek(0)
    said = err.read().decode(errors="replace").splitlines()
    bench = HostileBench(
        server=args.server or "installed digitkit.runtime.server", flood_connections=args.connections,
        flood_headers=args.headers, flood_header_bytes=args.header_bytes, flood_rss_mb_before=round(before, 1),
        flood_rss_mb_peak=round(peak, 1), flood_rss_mb_after_5s=round(after, 1), flood_seconds=round(flood_s, 1),
        flood_answers=_count(flood_answers), burst_clients=args.burst, burst_answers=_count(burst_answers),
        burst_p50_s=round(statistics.median(burst_times), 3), burst_max_s=round(max(burst_times), 3),
        drip_interval_s=args.drip_interval, drip_closed_after_s=round(drip_s, 1), drip_answer=drip_answer,
        stderr_lines=len(said), tracebacks=sum(line.startswith("Traceback") for line in said),
        platform=platform.platform(),
    )
    for key, value in bench.to_dict().items():
        print(f"{key:<24}{value}")
    if args.out:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from digitkit.runtime.fileio import atomic_write_json

        atomic_write_json(args.out, bench.to_dict())
    return bench


if __name__ == "__main__":
    main()

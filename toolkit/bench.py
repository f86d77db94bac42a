"""Benchmark .keras and .tflite models side by side on the same test images.

Every (model, backend, threads) row is measured in its own freshly spawned process, so load time and
peak RSS belong to that model alone and one model's warm caches or thread pools cannot help the next.
Latency is one image per call after a warm-up, timed with ``time.perf_counter_ns`` (like LiteRT's
``benchmark_model``); throughput is the median of three batched passes over the test images. Ratios are
taken against the first model measured with the same thread count, so they hold on a noisy, shared machine.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from digitkit.runtime.fileio import atomic_write_json
from digitkit.runtime.interpreter import load_interpreter_class
from digitkit.toolkit.bench_types import BenchConfig, BenchReport, BenchResult, LatencyStats
from digitkit.toolkit.data import load_mnist
from digitkit.toolkit.errors import ToolkitError
from digitkit.toolkit.measure import Job, environment, installed_backends, keras_mode, run_isolated, tflite_mode
from digitkit.toolkit.report import write_bench_report

FORMATS = {".keras": "keras", ".tflite": "tflite"}


def parse_int_list(text: str, what: str) -> tuple[int, ...]:
    """``"1,2"`` -> ``(1, 2)``; raises ToolkitError naming the flag for anything else."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ToolkitError(f"{what} {text!r} is not a comma-separated list of integers, e.g. 1,2") from None
    if not values:
        raise ToolkitError(f"{what} is empty; give a comma-separated list of integers, e.g. 1,2")
    return values


def check_config(config: BenchConfig) -> list[Path]:
    """Validate ``config`` before any work; returns the model paths. Raises ToolkitError naming the problem."""
    if not config.models:
        raise ToolkitError("no models given; pass one or more .keras / .tflite files")
    paths = [Path(m) for m in config.models]
    for p in paths:
        if p.suffix not in FORMATS:
            raise ToolkitError(f"{p}: unknown model format {p.suffix!r}; expected .keras or .tflite")
        if not p.is_file():
            raise ToolkitError(f"model file {p} not found")
    if any(t < 1 for t in config.threads) or not config.threads:
        raise ToolkitError(f"--threads {','.join(map(str, config.threads))}: every thread count must be >= 1")
    if config.runs < 1 or config.warmup < 0:
        raise ToolkitError(f"--runs {config.runs} must be >= 1 and --warmup {config.warmup} >= 0")
    if config.batch_size < 1:
        raise ToolkitError(f"--batch-size {config.batch_size} must be >= 1")
    if config.limit is not None and config.limit < 1:
        raise ToolkitError(f"--limit {config.limit} must be >= 1")
    if config.pin_cpu:
        allowed = os.sched_getaffinity(0)
        bad = sorted(set(config.pin_cpu) - allowed)
        if bad:
            raise ToolkitError(f"--pin-cpu {bad}: not usable CPUs here; choose from {sorted(allowed)}")
    return paths


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else float("nan")


# Called after each row with (done, total, row) so a CLI can draw progress.
RowCallback = Callable[[int, int, BenchResult], None]


def bench(models: Sequence[str | os.PathLike[str]] | None = None, config: BenchConfig | None = None,
          on_result: RowCallback | None = None, **overrides: Any) -> BenchReport:
    """Benchmark ``models`` (any mix of .keras and .tflite) on the same test images; Python twin of
    ``digitkit bench``.

    Args:
        models: model files; the first is the reference for ratios and agreement.
        config: settings (``BenchConfig()`` if None); keyword ``overrides`` replace fields.
        on_result: called after each measured row.

    Returns:
        BenchReport; also written to ``config.json_path`` (JSON) and ``config.report_dir`` (report.md + PNGs).

    Raises:
        ToolkitError: missing or unknown model files, bad settings, unusable data; InferenceError: a
        .tflite file the interpreter cannot load.
    """
    base = config.to_dict() if config else {}
    if models is not None:
        base["models"] = tuple(str(m) for m in models)
    config = BenchConfig(**{**base, **overrides})
    config = BenchConfig(**{**config.to_dict(), "models": tuple(str(m) for m in config.models),
                            "threads": tuple(config.threads),
                            "pin_cpu": tuple(config.pin_cpu) if config.pin_cpu else None})
    paths = check_config(config)
    backends = installed_backends()
    modes = {}
    for p in paths:
        if FORMATS[p.suffix] == "tflite":
            if not backends:
                load_interpreter_class()  # raises the "pip install ai-edge-litert" message
            modes[p] = tflite_mode(p, backends[0])
        else:
            modes[p] = keras_mode(p)
    data = load_mnist(config.data_dir)
    images, labels = data.x_test, data.y_test
    if config.limit is not None:
        images, labels = images[: config.limit], labels[: config.limit]

    plan = [(p, b, t) for p in paths for b in (["keras"] if FORMATS[p.suffix] == "keras" else backends)
            for t in config.threads]
    rows: list[BenchResult] = []
    for p, backend, threads in plan:
        raw = run_isolated(Job(str(p), FORMATS[p.suffix], backend, threads, config.pin_cpu, config.runs,
                                 config.warmup, config.batch_size, images))
        pred = raw["predictions"]
        ref = next((r for r in rows if r.model == str(paths[0]) and r.threads == threads), None)
        first = rows[0] if rows else None
        size = p.stat().st_size
        stats = LatencyStats.from_ns(raw["samples_ns"])
        tput = len(images) / (raw["batch_ns"] / 1e9)
        row = BenchResult(
            model=str(p), name=p.stem, format=FORMATS[p.suffix], mode=modes[p], backend=backend, threads=threads,
            pinned_cpus=tuple(raw["cpus"]) if config.pin_cpu else None, size_bytes=size, load_ms=raw["load_ns"] / 1e6,
            accuracy=float(np.mean(pred == labels)),
            agreement=float(np.mean(pred == first.predictions)) if first else 1.0,
            latency_ms=stats, runs=config.runs, warmup=config.warmup, throughput_ips=tput,
            batch_size=config.batch_size, peak_rss_mb=raw["peak_rss_mb"],
            model_rss_mb=raw["peak_rss_mb"] - raw["base_rss_mb"],
            ratios={"size": _ratio(size, ref.size_bytes) if ref else 1.0,
                    "p50": _ratio(stats.p50, ref.latency_ms.p50) if ref else 1.0,
                    "throughput": _ratio(tput, ref.throughput_ips) if ref else 1.0},
            latency_samples_ms=raw["samples_ns"] / 1e6, predictions=pred,
        )
        rows.append(row)
        if on_result is not None:
            on_result(len(rows), len(plan), row)

    report = BenchReport(
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), config=config,
        environment=environment({FORMATS[p.suffix] for p in paths}), data_source=data.source,
        test_size=len(images), reference=str(paths[0]), results=tuple(rows), labels=labels,
    )
    if config.json_path:
        Path(config.json_path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(config.json_path, report.to_dict())
    if config.report_dir:
        write_bench_report(report, images, config.report_dir)
    return report

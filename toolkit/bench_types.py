"""A benchmark's values: its settings, one row's result, the whole run. Shared by ``bench`` (which measures)
and ``report`` (which presents), importing neither.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

SCHEMA = "digitkit.bench/1"


@dataclass(frozen=True)
class BenchConfig:
    """Everything that decides a benchmark run; the CLI flags map one to one."""

    models: tuple[str, ...] = ()
    data_dir: str | None = None
    threads: tuple[int, ...] = (1,)
    runs: int = 500
    warmup: int = 50
    pin_cpu: tuple[int, ...] | None = None
    limit: int | None = None
    batch_size: int = 256
    json_path: str | None = None
    report_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LatencyStats:
    """Single-image latency in milliseconds over ``runs`` timed calls after the warm-up."""

    mean: float
    std: float
    min: float
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def from_ns(cls, samples_ns: np.ndarray) -> LatencyStats:
        ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(float(ms.mean()), float(ms.std()), float(ms.min()), float(p50), float(p90), float(p99),
                   float(ms.max()))

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class BenchResult:
    """One row of the table: one model on one backend with one thread count."""

    model: str
    name: str
    format: str  # "keras" | "tflite"
    mode: str  # "float32" | "float16" | "dynamic" | "int8" | "int16x8"
    backend: str  # "keras" | "litert" | "tflite-runtime"
    threads: int
    pinned_cpus: tuple[int, ...] | None  # the measuring process's CPU affinity, read back, when --pin-cpu
    size_bytes: int
    load_ms: float
    accuracy: float
    agreement: float  # fraction of test images where the prediction equals the first model's
    latency_ms: LatencyStats
    runs: int
    warmup: int
    throughput_ips: float
    batch_size: int
    peak_rss_mb: float
    model_rss_mb: float  # peak RSS minus the RSS of the same process just before loading the model
    ratios: dict[str, float]  # size, p50, throughput: this row / the first model's row with the same threads
    # Kept for plots, not written to JSON:
    latency_samples_ms: np.ndarray = field(compare=False, repr=False)
    predictions: np.ndarray = field(compare=False, repr=False)

    @property
    def label(self) -> str:
        what = self.mode if self.name == self.mode else f"{self.name} {self.mode}"
        return f"{what} ({self.backend}, {self.threads} thread{'s' if self.threads > 1 else ''})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "name": self.name, "format": self.format, "mode": self.mode,
            "backend": self.backend, "threads": self.threads,
            "pinned_cpus": list(self.pinned_cpus) if self.pinned_cpus else None,
            "size_bytes": self.size_bytes, "load_ms": round(self.load_ms, 3),
            "accuracy": self.accuracy, "agreement": self.agreement, "latency_ms": self.latency_ms.to_dict(),
            "runs": self.runs, "warmup": self.warmup, "throughput_ips": round(self.throughput_ips, 1),
            "batch_size": self.batch_size, "peak_rss_mb": round(self.peak_rss_mb, 1),
            "model_rss_mb": round(self.model_rss_mb, 1), "ratios": {k: round(v, 4) for k, v in self.ratios.items()},
        }


@dataclass(frozen=True)
class BenchReport:
    """A whole benchmark run: settings, machine, data and one BenchResult per row."""

    created: str
    config: BenchConfig
    environment: dict[str, Any]
    data_source: str
    test_size: int
    reference: str
    results: tuple[BenchResult, ...]
    labels: np.ndarray = field(compare=False, repr=False)  # the test labels the rows were scored on

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA, "created": self.created,
            "settings": {"threads": list(self.config.threads), "runs": self.config.runs,
                         "warmup": self.config.warmup, "batch_size": self.config.batch_size,
                         "pin_cpu": list(self.config.pin_cpu) if self.config.pin_cpu else None,
                         "limit": self.config.limit},
            "environment": self.environment,
            "data": {"source": self.data_source, "test_images": self.test_size},
            "reference": self.reference,
            "results": [r.to_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchReport:
        """The inverse of :meth:`to_dict` (the figures; the latency samples and predictions, which the JSON does
        not keep, come back empty)."""
        settings = data["settings"]
        rows = []
        for row in data["results"]:
            rows.append(BenchResult(**{
                **row, "pinned_cpus": tuple(row["pinned_cpus"]) if row["pinned_cpus"] else None,
                "latency_ms": LatencyStats(**row["latency_ms"]),
                "latency_samples_ms": np.empty(0), "predictions": np.empty(0, np.uint8)}))
        config = BenchConfig(models=tuple(dict.fromkeys(r.model for r in rows)), threads=tuple(settings["threads"]),
                             runs=settings["runs"], warmup=settings["warmup"], batch_size=settings["batch_size"],
                             pin_cpu=tuple(settings["pin_cpu"]) if settings["pin_cpu"] else None,
                             limit=settings["limit"])
        return cls(created=data["created"], config=config, environment=data["environment"],
                   data_source=data["data"]["source"], test_size=data["data"]["test_images"],
                   reference=data["reference"], results=tuple(rows), labels=np.empty(0, np.uint8))


"""The pipeline's stages. Each ``run_NAME(ctx)`` writes its artefacts into ``ctx.out`` and returns
``(artefacts relative to ctx.out, its result)``: the dataclass that describes what it did (TrainResult,
Conversions of two ConversionReports, Verification, BenchReport, Classification, ReportFile). The pipeline puts
it on the Context for the later stages and stores its ``to_dict()`` in the stage's marker, from which a reused
stage is rebuilt, so a reused stage is as good as a fresh one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from digitkit.converters.data import balanced_sample
from digitkit.runtime.fileio import atomic_path, atomic_write_json, atomic_write_text, sidecar_path
from digitkit.toolkit.bench_types import BenchReport
from digitkit.toolkit.data import MnistData, load_mnist
from digitkit.toolkit.pipeline_types import (
    Callback,
    Classification,
    Conversions,
    DigitRead,
    PipelineConfig,
    ReportFile,
    StageEvent,
    Verification,
)
from digitkit.toolkit.train import TrainConfig, TrainResult

T = TypeVar("T")



@dataclass
class Context:
    """What the stages share: the settings, the output folder, the progress callback, and what each finished
    stage handed on (set by :mod:`digitkit.toolkit.pipeline`, from the stage or from its marker when reused)."""

    config: PipelineConfig
    out: Path
    emit: Callback
    trained: TrainResult | None = None
    conversions: Conversions | None = None
    verification: Verification | None = None
    benchmark: BenchReport | None = None
    classification: Classification | None = None
    report: ReportFile | None = None
    _data: MnistData | None = None

    def data(self) -> MnistData:
        if self._data is None:
            self._data = load_mnist(self.config.data_dir)
        return self._data

    def progress(self, stage: str, completed: float, total: float, message: str) -> None:
        self.emit(StageEvent(stage, "progress", completed, total, message))


def run_train(ctx: Context) -> tuple[list[str], TrainResult]:
    from digitkit.toolkit.train import train

    cfg = ctx.config

    def on_epoch(epoch: int, total: int, logs: dict[str, float]) -> None:
        text = f"epoch {epoch}/{total} acc {logs.get('accuracy', float('nan')):.4f}"
        if "val_accuracy" in logs:
            text += f" val {logs['val_accuracy']:.4f}"
        ctx.progress("train", epoch, total, text)

    result = train(TrainConfig(out=str(ctx.out / "float.keras"), arch=cfg.arch, epochs=cfg.epochs, seed=cfg.seed,
                               data_dir=cfg.data_dir), on_epoch=on_epoch)
    return ["float.keras", sidecar_path("float.keras").name], result


def run_convert(ctx: Context) -> tuple[list[str], Conversions]:
    from digitkit.converters.errors import GateFailed
    from digitkit.toolkit.convert import convert

    data = ctx.data()
    reports = {}
    for step, mode in enumerate(("float32", "int8")):
        ctx.progress("convert", step, 2, f"{mode} (convert, verify on {len(data.y_test)} test images, gate)")
        extra = {"max_drop": ctx.config.max_drop} if ctx.config.max_drop is not None and mode == "int8" else {}
        try:
            reports[mode] = convert(ctx.out / "float.keras", ctx.out / f"{mode}.tflite", data=data, mode=mode,
                                    keep_rejected=True, **extra)
        except GateFailed as exc:  # keep going: the report shows the failing model and why
            reports[mode] = exc.report
    result = Conversions(**reports)
    return [name for mode in ("float32", "int8") for name in (result.path(mode), sidecar_path(result.path(mode)).name)
            ], result


def run_verify(ctx: Context) -> tuple[list[str], Verification]:
    """Re-check the files on disk, as a user would, with ``evaluate``: accuracy, per class, confusion."""
    from digitkit.toolkit.evaluate import evaluate

    conv = _need(ctx.conversions)
    files = {"keras": "float.keras", "float32": conv.path("float32"), "int8": conv.path("int8")}
    results = {}
    for step, (key, name) in enumerate(files.items()):
        ctx.progress("verify", step, len(files), f"evaluate {name}")
        results[key] = evaluate(ctx.out / name, data_dir=ctx.config.data_dir)
    drop_pp = (results["keras"].accuracy - results["int8"].accuracy) * 100
    max_drop = conv.int8.max_drop_pp
    result = Verification(
        models=results, drop_pp=round(drop_pp, 4), max_drop_pp=max_drop, passed=bool(drop_pp <= max_drop + 1e-9),
        matches_conversion=bool(abs(results["int8"].accuracy - conv.int8.converted_accuracy) < 1e-9))
    atomic_write_json(ctx.out / "verify.json", result.to_dict())
    return ["verify.json"], result


def run_bench(ctx: Context) -> tuple[list[str], BenchReport]:
    from digitkit.toolkit.bench import bench
    from digitkit.toolkit.report import bench_markdown, write_bench_plots

    cfg = ctx.config
    conv = _need(ctx.conversions)
    models = [ctx.out / "float.keras", ctx.out / conv.path("float32"), ctx.out / conv.path("int8")]
    total = len(models) * len(cfg.threads)
    report = bench(models, data_dir=cfg.data_dir, threads=cfg.threads, runs=cfg.runs, warmup=cfg.warmup,
                   json_path=str(ctx.out / "bench.json"),
                   on_result=lambda done, _, row: ctx.progress("bench", done, total,
                                                               f"{row.label}: p50 {row.latency_ms.p50:.3f} ms"))
    folder = ctx.out / "bench"
    plots = write_bench_plots(report, ctx.data().x_test, folder)
    atomic_write_text(folder / "report.md", bench_markdown(report, plots, folder) + "\n")
    atomic_write_text(folder / "section.md", bench_markdown(report, plots, ctx.out, heading="##") + "\n")
    names = ["bench.json", "bench/report.md", "bench/section.md", *(f"bench/{p.name}" for p in plots.values())]
    return names, report


def paper_strip(tiles: np.ndarray, scale: int = 3, gap: int = 10) -> np.ndarray:
    """Digits written on paper: dark ink on a light, slightly uneven background, upscaled like a photo."""
    h = tiles.shape[1] + 2 * gap
    strip = np.zeros((h, gap + len(tiles) * (tiles.shape[2] + gap)), dtype=np.uint8)
    for i, tile in enumerate(tiles):
        x = gap + i * (tiles.shape[2] + gap)
        strip[gap:gap + tiles.shape[1], x:x + tiles.shape[2]] = tile
    strip = cv2.resize(strip, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    shade = np.linspace(225, 245, strip.shape[1], dtype=np.float32)[None, :]
    return np.clip(shade - strip.astype(np.float32) * 0.8, 0, 255).astype(np.uint8)


def run_classify(ctx: Context) -> tuple[list[str], Classification]:
    """Read a handful of test digits with the runtime classifier and the int8 model, one by one and as a
    line of digits on paper (segmentation included)."""
    from digitkit.runtime.classifier import DigitClassifier
    from digitkit.toolkit.report import plot_digit_grid

    data = ctx.data()
    idx = balanced_sample(data.y_test, ctx.config.samples, seed=ctx.config.seed)
    tiles, truth = data.x_test[idx], data.y_test[idx]
    clf = DigitClassifier(ctx.out / _need(ctx.conversions).path("int8"))
    digits = []
    for tile, label in zip(tiles, truth, strict=True):
        reading = clf.classify(tile)
        best = reading.digits[0] if reading.digits else None
        digits.append(DigitRead(int(label), reading.text, round(best.confidence, 4) if best else None))
    strip = paper_strip(tiles)
    line = clf.classify(strip)
    with atomic_path(ctx.out / "classify_strip.png") as tmp:
        if not cv2.imwrite(str(tmp), strip):  # an empty temp file must not be renamed into place
            raise OSError(f"OpenCV could not write {tmp}")
    captions = [f"read {d.read or '-'}" + ("" if d.read == str(d.true) else f" (true {d.true})") for d in digits]
    plot_digit_grid(tiles, captions, "the int8 model reading test digits through the runtime classifier",
                    ctx.out / "classify_digits.png", cols=min(10, len(tiles)))
    result = Classification(tuple(digits), "".join(map(str, truth)), line.text,
                            tuple(round(d.confidence, 4) for d in line.digits))
    atomic_write_json(ctx.out / "classify.json", result.to_dict())
    return ["classify.json", "classify_strip.png", "classify_digits.png"], result


def run_report(ctx: Context) -> tuple[list[str], ReportFile]:
    from digitkit.toolkit.pipeline_report import write_report

    path = write_report(ctx.out, ctx.config, _need(ctx.trained), _need(ctx.conversions), _need(ctx.verification),
                        _need(ctx.classification), headline(ctx))
    return [path.name], ReportFile(path.name)


def _need(value: T | None) -> T:
    """A value an earlier stage must have handed on (the pipeline runs the stages in order)."""
    if value is None:
        raise AssertionError("a stage ran before the stage it depends on")
    return value


def bars(conversions: Conversions, benchmark: BenchReport) -> dict[str, dict[str, float]]:
    """The issue's ratios per thread count, from the benchmark rows of the three models (measured side by side)."""
    out: dict[str, dict[str, float]] = {}
    for t in benchmark.config.threads:
        rows = {Path(r.model).name: r for r in benchmark.results if r.threads == t}
        keras_row, f32, int8 = (rows[n] for n in ("float.keras", conversions.path("float32"), conversions.path("int8")))
        out[str(t)] = {"int8_vs_float32_tflite_p50": int8.latency_ms.p50 / f32.latency_ms.p50,
                       "int8_vs_keras_p50": int8.latency_ms.p50 / keras_row.latency_ms.p50,
                       "int8_vs_float32_tflite_size": int8.size_bytes / f32.size_bytes}
    return out


def headline(ctx: Context) -> dict[str, Any]:
    """The figures the terminal summary and the report's first table show (JSON: PipelineResult.summary)."""
    conv, ver = _need(ctx.conversions), _need(ctx.verification)
    ben, cls = _need(ctx.benchmark), _need(ctx.classification)
    threads = ben.config.threads[0]
    rows = {(Path(r.model).name, r.threads): r for r in ben.results}
    files = {"keras": "float.keras", "float32": conv.path("float32"), "int8": conv.path("int8")}
    pick = {k: rows[(name, threads)] for k, name in files.items()}
    return {
        "float_accuracy": ver.models["keras"].accuracy, "float32_tflite_accuracy": ver.models["float32"].accuracy,
        "int8_accuracy": ver.models["int8"].accuracy, "drop_pp": ver.drop_pp, "max_drop_pp": ver.max_drop_pp,
        "gate_passed": bool(conv.int8.passed and ver.passed),
        "keras_bytes": pick["keras"].size_bytes, "float32_tflite_bytes": conv.float32.size_bytes,
        "int8_bytes": conv.int8.size_bytes, "threads": int(threads),
        "p50_ms": {k: r.latency_ms.p50 for k, r in pick.items()}, "bars": bars(conv, ben)[str(threads)],
        "classified": f"{cls.correct}/{len(cls.digits)}",
        "strip": {"truth": cls.strip_truth, "read": cls.strip_read, "confidences": list(cls.strip_confidences)},
    }


# stage -> (the Context attribute it fills, how its marker's JSON becomes that value again)
RESULTS: dict[str, tuple[str, Callable[[dict[str, Any]], Any]]] = {
    "train": ("trained", lambda d: TrainResult(**d)),
    "convert": ("conversions", Conversions.from_dict),
    "verify": ("verification", Verification.from_dict),
    "bench": ("benchmark", BenchReport.from_dict),
    "classify": ("classification", Classification.from_dict),
    "report": ("report", ReportFile.from_dict),
}

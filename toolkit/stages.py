"""The pipeline's stages. Each ``run_NAME(ctx)`` writes its artefacts into ``ctx.out`` and returns
``(artefacts relative to ctx.out, summary)``; the summary is JSON and is all later stages and the report
read, so a reused stage is as good as a fresh one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from digitkit.converters.data import balanced_sample
from digitkit.runtime.fileio import atomic_path, atomic_write_json, atomic_write_text, sidecar_path
from digitkit.toolkit.data import MnistData, load_mnist

if TYPE_CHECKING:
    from digitkit.toolkit.pipeline_types import Callback, PipelineConfig


@dataclass
class Context:
    """What the stages share: the settings, the output folder, the progress callback, earlier summaries."""

    config: PipelineConfig
    out: Path
    emit: Callback
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    _data: MnistData | None = None

    def data(self) -> MnistData:
        if self._data is None:
            self._data = load_mnist(self.config.data_dir)
        return self._data

    def progress(self, stage: str, completed: float, total: float, message: str) -> None:
        from digitkit.toolkit.pipeline_types import StageEvent

        self.emit(StageEvent(stage, "progress", completed, total, message))


def run_train(ctx: Context) -> tuple[list[str], dict[str, Any]]:
    from digitkit.toolkit.train import TrainConfig, train

    cfg = ctx.config

    def on_epoch(epoch: int, total: int, logs: dict[str, float]) -> None:
        text = f"epoch {epoch}/{total} acc {logs.get('accuracy', float('nan')):.4f}"
        if "val_accuracy" in logs:
            text += f" val {logs['val_accuracy']:.4f}"
        ctx.progress("train", epoch, total, text)

    result = train(TrainConfig(out=str(ctx.out / "float.keras"), arch=cfg.arch, epochs=cfg.epochs, seed=cfg.seed,
                               data_dir=cfg.data_dir), on_epoch=on_epoch)
    summary = {k: v for k, v in result.to_dict().items() if k not in ("config", "model_path", "sidecar_path")}
    return ["float.keras", "float.keras.json"], summary


def run_convert(ctx: Context) -> tuple[list[str], dict[str, Any]]:
    from digitkit.converters.errors import GateFailed
    from digitkit.toolkit.convert import convert

    data = ctx.data()
    summary: dict[str, Any] = {}
    artefacts = []
    for step, mode in enumerate(("float32", "int8")):
        ctx.progress("convert", step, 2, f"{mode} (convert, verify on {len(data.y_test)} test images, gate)")
        extra = {"max_drop": ctx.config.max_drop} if ctx.config.max_drop is not None and mode == "int8" else {}
        try:
            report = convert(ctx.out / "float.keras", ctx.out / f"{mode}.tflite", data=data, mode=mode,
                             keep_rejected=True, **extra)
        except GateFailed as exc:  # keep going: the report shows the failing model and why
            report = exc.report
        path = Path(report.model_path if report.passed else report.rejected_path)
        artefacts += [path.name, sidecar_path(path).name]
        summary[mode] = {**report.to_dict(), "path": path.name}
    summary["gate_passed"] = bool(summary["int8"]["passed"])
    return artefacts, summary


def run_verify(ctx: Context) -> tuple[list[str], dict[str, Any]]:
    """Re-check the files on disk, as a user would, with ``evaluate``: accuracy, per class, confusion."""
    from digitkit.toolkit.evaluate import evaluate

    conv = ctx.summaries["convert"]
    files = {"keras": "float.keras", "float32": conv["float32"]["path"], "int8": conv["int8"]["path"]}
    results = {}
    for step, (key, name) in enumerate(files.items()):
        ctx.progress("verify", step, len(files), f"evaluate {name}")
        results[key] = evaluate(ctx.out / name, data_dir=ctx.config.data_dir).to_dict()
    drop_pp = (results["keras"]["accuracy"] - results["int8"]["accuracy"]) * 100
    max_drop = conv["int8"]["max_drop_pp"]
    summary = {
        "models": results, "drop_pp": round(drop_pp, 4), "max_drop_pp": max_drop,
        "passed": bool(drop_pp <= max_drop + 1e-9),
        # The file on disk must score what the converter measured before writing it.
        "matches_conversion": bool(abs(results["int8"]["accuracy"] - conv["int8"]["converted_accuracy"]) < 1e-9),
    }
    atomic_write_json(ctx.out / "verify.json", summary)
    return ["verify.json"], summary


def run_bench(ctx: Context) -> tuple[list[str], dict[str, Any]]:
    from digitkit.toolkit.bench import bench
    from digitkit.toolkit.report import bench_markdown, write_bench_plots

    cfg = ctx.config
    conv = ctx.summaries["convert"]
    models = [ctx.out / "float.keras", ctx.out / conv["float32"]["path"], ctx.out / conv["int8"]["path"]]
    total = len(models) * len(cfg.threads)
    report = bench(models, data_dir=cfg.data_dir, threads=cfg.threads, runs=cfg.runs, warmup=cfg.warmup,
                   json_path=str(ctx.out / "bench.json"),
                   on_result=lambda done, _, row: ctx.progress("bench", done, total,
                                                               f"{row.label}: p50 {row.latency_ms.p50:.3f} ms"))
    folder = ctx.out / "bench"
    plots = write_bench_plots(report, ctx.data().x_test, folder)
    atomic_write_text(folder / "report.md", bench_markdown(report, plots, folder) + "\n")
    atomic_write_text(folder / "section.md", bench_markdown(report, plots, ctx.out, heading="##") + "\n")
    rows = [r.to_dict() for r in report.results]
    bars = {}
    for t in cfg.threads:
        keras_row, f32, int8 = (next(r for r in rows if r["model"] == str(m) and r["threads"] == t) for m in models)
        bars[str(t)] = {"int8_vs_float32_tflite_p50": int8["latency_ms"]["p50"] / f32["latency_ms"]["p50"],
                        "int8_vs_keras_p50": int8["latency_ms"]["p50"] / keras_row["latency_ms"]["p50"],
                        "int8_vs_float32_tflite_size": int8["size_bytes"] / f32["size_bytes"]}
    names = ["bench.json", "bench/report.md", "bench/section.md", *(f"bench/{p.name}" for p in plots.values())]
    return names, {"rows": rows, "bars": bars, "environment": report.environment}


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


def run_classify(ctx: Context) -> tuple[list[str], dict[str, Any]]:
    """Read a handful of test digits with the runtime classifier and the int8 model, one by one and as a
    line of digits on paper (segmentation included)."""
    from digitkit.runtime.classifier import DigitClassifier
    from digitkit.toolkit.report import plot_digit_grid

    data = ctx.data()
    idx = balanced_sample(data.y_test, ctx.config.samples, seed=ctx.config.seed)
    tiles, truth = data.x_test[idx], data.y_test[idx]
    clf = DigitClassifier(ctx.out / ctx.summaries["convert"]["int8"]["path"])
    digits = []
    for tile, label in zip(tiles, truth, strict=True):
        reading = clf.classify(tile)
        best = reading.digits[0] if reading.digits else None
        digits.append({"true": int(label), "read": reading.text,
                       "confidence": round(best.confidence, 4) if best else None})
    strip = paper_strip(tiles)
    line = clf.classify(strip)
    with atomic_path(ctx.out / "classify_strip.png") as tmp:
        if not cv2.imwrite(str(tmp), strip):  # an empty temp file must not be renamed into place
            raise OSError(f"OpenCV could not write {tmp}")
    captions = [f"read {d['read'] or '-'}" + ("" if d["read"] == str(d["true"]) else f" (true {d['true']})")
                for d in digits]
    plot_digit_grid(tiles, captions, "the int8 model reading test digits through the runtime classifier",
                    ctx.out / "classify_digits.png", cols=min(10, len(tiles)))
    summary = {"digits": digits, "correct": sum(d["read"] == str(d["true"]) for d in digits),
               "strip": {"truth": "".join(map(str, truth)), "read": line.text,
                         "confidences": [round(d.confidence, 4) for d in line.digits]}}
    atomic_write_json(ctx.out / "classify.json", summary)
    return ["classify.json", "classify_strip.png", "classify_digits.png"], summary


def run_report(ctx: Context) -> tuple[list[str], dict[str, Any]]:
    from digitkit.toolkit.pipeline_report import write_report

    path = write_report(ctx.out, ctx.config, ctx.summaries, headline(ctx.summaries))
    return [path.name], {"report": path.name}


def headline(s: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The figures the terminal summary and the report's first table show."""
    conv, ver, ben = s["convert"], s["verify"], s["bench"]
    threads = next(iter(ben["bars"]))
    rows = {(Path(r["model"]).name, r["threads"]): r for r in ben["rows"]}
    files = {"keras": "float.keras", "float32": conv["float32"]["path"], "int8": conv["int8"]["path"]}
    pick = {k: rows[(name, int(threads))] for k, name in files.items()}
    models = ver["models"]
    return {
        "float_accuracy": models["keras"]["accuracy"], "float32_tflite_accuracy": models["float32"]["accuracy"],
        "int8_accuracy": models["int8"]["accuracy"], "drop_pp": ver["drop_pp"], "max_drop_pp": ver["max_drop_pp"],
        "gate_passed": bool(conv["gate_passed"] and ver["passed"]),
        "keras_bytes": pick["keras"]["size_bytes"], "float32_tflite_bytes": conv["float32"]["size_bytes"],
        "int8_bytes": conv["int8"]["size_bytes"], "threads": int(threads),
        "p50_ms": {k: r["latency_ms"]["p50"] for k, r in pick.items()}, "bars": ben["bars"][threads],
        "classified": f"{s['classify']['correct']}/{len(s['classify']['digits'])}", "strip": s["classify"]["strip"],
    }

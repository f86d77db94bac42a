"""The pipeline's ``report.md``: headline figures, the bars, every stage's numbers, and all the plots."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from digitkit.runtime.fileio import atomic_write_text, is_temp
from digitkit.toolkit.pipeline_types import Classification, Conversions, PipelineConfig, Verification
from digitkit.toolkit.report import markdown_table
from digitkit.toolkit.train import TrainResult

# The bars: (key in headline["bars"], description, limit). Lower is better for all three.
BARS = (
    ("int8_vs_float32_tflite_p50", "int8 p50 latency / float32 .tflite p50 (same backend and threads)", 0.4),
    ("int8_vs_keras_p50", "int8 p50 latency / Keras float `model(x)` p50", 0.02),
    ("int8_vs_float32_tflite_size", "int8 file size / float32 .tflite size", 0.27),
)
INT8_ACCURACY_BAR = 0.995


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2%}"  # None: a class absent from the test set


def _kb(n: int | None) -> str:
    return f"{n / 1024:,.1f} KB" if n else "-"


def headline_rows(h: dict[str, Any]) -> list[tuple[str, str]]:
    """(figure, value) rows shared by the terminal summary and the report."""
    t = h["threads"]
    return [
        ("float accuracy (Keras)", _pct(h["float_accuracy"])),
        ("float32 .tflite accuracy", _pct(h["float32_tflite_accuracy"])),
        ("int8 .tflite accuracy", _pct(h["int8_accuracy"])),
        ("drop (float -> int8)", f"{h['drop_pp']:+.2f} pp (gate: at most {h['max_drop_pp']:g} pp)"),
        ("gate", "PASSED" if h["gate_passed"] else "FAILED"),
        ("size: float32 .tflite / int8", f"{_kb(h['float32_tflite_bytes'])} / {_kb(h['int8_bytes'])}"),
        (f"p50 latency, {t} thread{'s' if t > 1 else ''}: Keras / float32 / int8",
         " / ".join(f"{h['p50_ms'][k]:.3f} ms" for k in ("keras", "float32", "int8"))),
        ("test digits read by the classifier", h["classified"]),
        ("line of digits on paper", f"read {h['strip']['read'] or '-'} (written {h['strip']['truth']})"),
    ]


def bar_rows(h: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(bar, target, measured, met) for the issue's bars."""
    rows = [(desc, f"<= {limit}", f"{h['bars'][key]:.3f}", "yes" if h["bars"][key] <= limit else "NO")
            for key, desc, limit in BARS]
    acc = h["int8_accuracy"]
    rows.append(("int8 test accuracy", f">= {INT8_ACCURACY_BAR:.1%}", _pct(acc),
                 "yes" if acc >= INT8_ACCURACY_BAR else "NO"))
    return rows


def _stage_rows(out: Path) -> list[tuple[str, str]]:
    rows = []
    markers = [m for m in (out / "stages").glob("*.json") if not is_temp(m)]
    for marker in sorted(markers, key=lambda p: p.stat().st_mtime):
        try:
            data = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        rows.append((data.get("stage", marker.stem), f"{float(data.get('seconds', 0)):.1f}"))
    return rows


def write_report(out: Path, config: PipelineConfig, train: TrainResult, conv: Conversions, ver: Verification,
                 cls: Classification, h: dict[str, Any]) -> Path:
    """Compose ``out/report.md`` from what the stages handed on and the headline ``h``; returns its path."""
    command = ["digitkit", "pipeline", "--out", str(out), "--arch", config.arch, "--epochs", str(config.epochs)]
    if config.data_dir:
        command += ["--data-dir", config.data_dir]
    verdict = "passed" if h["gate_passed"] else "**FAILED**"
    parts = [
        f"# digitkit pipeline: {config.arch}, {config.epochs} epoch{'s' if config.epochs > 1 else ''}",
        "",
        f"From data to a verified int8 edge model. The accuracy gate {verdict}: int8 {_pct(h['int8_accuracy'])} vs "
        f"float {_pct(h['float_accuracy'])} ({h['drop_pp']:+.2f} pp, allowed {h['max_drop_pp']:g} pp).",
        "",
        f"Reproduce: `{shlex.join(command)}`",
        "",
        "## Summary",
        "",
        markdown_table(("figure", "value"), headline_rows(h)),
        "",
        "## Bars",
        "",
        "Measured side by side in one benchmark run (ratios, so they hold on a busy machine).",
        "",
        markdown_table(("bar", "target", "measured", "met"), bar_rows(h)),
        "",
        "## Training",
        "",
        markdown_table(("", "value"), [
            ("architecture", f"{train.arch}: {train.params:,} parameters, {train.macs:,} MACs"),
            ("data", f"`{train.data_source}` (sha256 {train.data_sha256[:12]}…)"),
            ("train / validation / test images", f"{train.train_size} / {train.val_size} / {train.test_size}"),
            ("epochs, seed", f"{train.epochs}, {train.seed}"),
            ("validation / test accuracy", f"{_pct(train.val_accuracy)} / {_pct(train.test_accuracy)}"),
            ("training time", f"{train.train_seconds:.0f} s"),
        ]),
        "",
        "## Conversion",
        "",
        markdown_table(("", "float32 .tflite", "int8 .tflite"), [
            (key, *(str(fmt(getattr(conv, m), conv.path(m))) for m in ("float32", "int8"))) for key, fmt in (
                ("file", lambda c, path: f"`{path}`"),
                ("input / output", lambda c, _: f"{c.input_dtype} / {c.output_dtype}"),
                ("size", lambda c, _: f"{c.size_bytes:,} B ({c.compression_ratio:.1%} of float32)"),
                ("accuracy (float → converted)",
                 lambda c, _: f"{_pct(c.float_accuracy)} → {_pct(c.converted_accuracy)}"),
                ("drop / gate", lambda c, _: f"{c.drop_pp:+.2f} pp / {'passed' if c.passed else 'FAILED'}"),
                ("agreement with Keras", lambda c, _: _pct(c.agreement)),
                ("operators", lambda c, _: ", ".join(f"{k} {v}" for k, v in c.op_counts.items())),
                ("operators on float tensors", lambda c, _: str(c.float_ops)),
                ("calibration images", lambda c, _: str(c.calibration_samples or "-")),
            )]),
        "",
        "## Verification (the files on disk, re-evaluated)",
        "",
        f"int8 accuracy re-measured from `{conv.path('int8')}`: {_pct(ver.models['int8'].accuracy)} "
        f"({'matches' if ver.matches_conversion else 'DOES NOT match'} the converter's figure); drop "
        f"{ver.drop_pp:+.2f} pp vs the limit {ver.max_drop_pp:g} pp: {'passed' if ver.passed else 'FAILED'}.",
        "",
        markdown_table(("digit", "Keras float", "float32 .tflite", "int8 .tflite"), [
            (str(d), *(_pct(ver.models[m].per_class_accuracy[d]) for m in ("keras", "float32", "int8")))
            for d in range(10)]),
        "",
        (out / "bench" / "section.md").read_text(encoding="utf-8").rstrip(),
        "",
        "## Classifying test digits with the runtime",
        "",
        f"`digitkit.runtime.DigitClassifier` with `{conv.path('int8')}` read {h['classified']} single test digits:",
        "",
        "![digits read](classify_digits.png)",
        "",
        f"and read the line below, written as dark ink on light paper, as **{cls.strip_read or '(nothing)'}** "
        f"(written: {cls.strip_truth}):",
        "",
        "![a line of digits](classify_strip.png)",
        "",
        "## Stages",
        "",
        markdown_table(("stage", "seconds"), _stage_rows(out)),
        "",
    ]
    target = out / "report.md"
    atomic_write_text(target, "\n".join(parts))
    return target

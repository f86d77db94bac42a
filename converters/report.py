"""The conversion's result as a value, the ``FILE.tflite.json`` record for people, and its tables.

The runtime never reads that record: what it needs is embedded in the model (:func:`runtime_metadata`).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from rich.table import Table

from digitkit.converters.verify import LayerError
from digitkit.runtime.fileio import sidecar_path
from digitkit.runtime.interpreter import ModelMetadata


@dataclass(frozen=True)
class ConversionReport:
    """What one ``digitkit convert`` produced and measured. ``to_dict`` is the sidecar's "report"."""

    model_path: str  # where the model is (or, when rejected and not kept, would have been)
    source_model: str
    mode: str
    io: str
    input_dtype: str
    input_scale: float  # 0.0 for a float input
    input_zero_point: int
    output_dtype: str
    calibration_samples: int  # 0 for modes that do not calibrate
    test_size: int
    float_accuracy: float
    converted_accuracy: float
    drop_pp: float
    agreement: float
    max_drop_pp: float
    passed: bool
    size_bytes: int
    float32_tflite_bytes: int
    compression_ratio: float  # size_bytes / float32_tflite_bytes
    conversion_seconds: float  # the TensorFlow converter call for the requested mode only
    verification_seconds: float
    backend: str
    op_counts: dict[str, int] = field(default_factory=dict)
    float_ops: int = 0  # operators reading or writing a float tensor (must be 0 for int8)
    rejected_path: str | None = None  # with --keep-rejected, where the failing model was kept
    layers_path: str | None = None
    not_a_digit: dict[str, Any] | None = None  # Rejection.to_dict() for a model with a "not a digit" output
    read_accuracy: float | None = None  # Verification.read_accuracy: digits read right by the runtime's rule

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def versions() -> dict[str, str]:
    """The versions that decide what a conversion produces."""
    found = {"python": platform.python_version()}
    for dist in ("tensorflow", "keras", "numpy", "ai-edge-litert"):
        try:
            found[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            found[dist] = "absent"
    return found


def runtime_metadata(metadata: ModelMetadata | None = None) -> ModelMetadata:
    """What the converter embeds for the runtime: the MNIST conventions (labels 0-9, 28x28, white on black,
    x/255, softmax output) and, for a model with a "not a digit" output, its index and measured threshold;
    every field of :class:`ModelMetadata` included."""
    return metadata or ModelMetadata()


def training_record(source: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The record ``digitkit train`` wrote beside the source model (``m.keras.json``), or None if there is none
    or it cannot be read (a model trained elsewhere)."""
    path = sidecar_path(source)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def sidecar(report: ConversionReport, model_bytes: bytes, source: str | os.PathLike[str],
            provenance: dict[str, Any], config: dict[str, Any],
            metadata: ModelMetadata | None = None) -> dict[str, Any]:
    """The ``FILE.tflite.json`` beside the model, for people. ``model_sha256`` names the exact model file it
    describes (two runs writing the same --out cannot pass one's record off as the other's), ``runtime`` repeats
    what is embedded in the model, and ``provenance.training`` keeps the source model's training record."""
    return {
        "model_sha256": hashlib.sha256(model_bytes).hexdigest(),
        "runtime": runtime_metadata(metadata).to_dict(),
        "report": report.to_dict(),
        "provenance": {
            "source_model": str(source),
            "source_sha256": sha256_file(source),
            **provenance,
            "config": config,
            "versions": versions(),
            "converted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "training": training_record(source),
        },
    }


def describes(record_path: str | os.PathLike[str], model_path: str | os.PathLike[str]) -> bool:
    """True when the record at ``record_path`` was written for exactly the model file at ``model_path``."""
    try:
        record = json.loads(Path(record_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record.get("model_sha256") == sha256_file(model_path)


def _pct(x: float) -> str:
    return f"{x:.2%}"


def report_table(report: ConversionReport) -> Table:
    """The human summary ``digitkit convert`` prints."""
    verdict = "[green]passed[/green]" if report.passed else "[red]REJECTED[/red]"
    table = Table(title=f"{report.mode} conversion of {Path(report.source_model).name}: gate {verdict}")
    table.add_column("", overflow="fold")
    table.add_column("value", justify="right", overflow="fold")
    rows = [
        ("model", report.rejected_path or report.model_path),
        ("input / output", f"{report.input_dtype} / {report.output_dtype}"
         + (f" (scale {report.input_scale:.6g}, zero point {report.input_zero_point})" if report.input_scale else "")),
        ("calibration images (training split)", str(report.calibration_samples) if report.calibration_samples else "-"),
        ("float accuracy (Keras)", _pct(report.float_accuracy)),
        (f"{report.mode} accuracy ({report.backend})", _pct(report.converted_accuracy)),
        ("drop", f"{report.drop_pp:+.2f} pp (max {report.max_drop_pp:.2f} pp)"),
        ("agreement", f"{report.agreement:.2%} of {report.test_size} test images"),
        ("size", f"{report.size_bytes:,} B"),
        ("float32 .tflite size", f"{report.float32_tflite_bytes:,} B"),
        ("size / float32 .tflite", f"{report.compression_ratio:.1%}"),
        ("operators", ", ".join(f"{k} {v}" for k, v in report.op_counts.items())),
        ("operators on float tensors", str(report.float_ops)),
        ("conversion time", f"{report.conversion_seconds:.2f} s"),
        ("verification time", f"{report.verification_seconds:.1f} s"),
    ]
    if report.not_a_digit:
        nad = report.not_a_digit
        rows.append(("not-a-digit threshold (validation)",
                     f"{nad['threshold']:.3f}: keeps {nad['val_digits_kept']:.2%} of {nad['val_digits']} digits, "
                     f"rejects {nad['val_negatives_rejected']:.2%} of {nad['val_negatives']} non-digits"))
    if report.read_accuracy is not None:
        rows.append(("test digits read (best digit, below threshold)", _pct(report.read_accuracy)))
    if report.layers_path:
        rows.append(("per-layer report", report.layers_path))
    for key, value in rows:
        table.add_row(key, value)
    return table


def layers_table(layers: list[LayerError]) -> Table:
    """The --debug-layers table: the worst layer (by RMSE in quantization steps) is marked."""
    worst = max(range(len(layers)), key=lambda i: layers[i].rmse_per_scale, default=-1)
    table = Table(title="per-layer int8 error (output vs float; RMSE/scale ~0.29 is ideal rounding)")
    for col in ("#", "layer", "op", "RMSE", "scale", "RMSE/scale", "max |err|", ""):
        # Long layer names wrap instead of being cut to "conv2d_2…"; figures are never cut.
        table.add_column(col, justify="left" if col in ("layer", "op", "") else "right", overflow="fold",
                         no_wrap=col not in ("layer", "op", ""))
    for i, layer in enumerate(layers):
        table.add_row(str(i), layer.layer, layer.op, f"{layer.rmse:.3g}", f"{layer.scale:.3g}",
                      f"{layer.rmse_per_scale:.3f}", f"{layer.max_abs_error:.3g}",
                      "[red]worst[/red]" if i == worst else "")
    return table

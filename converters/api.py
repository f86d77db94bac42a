"""``convert``: Keras -> TFLite, prove no operator runs in float (int8), verify on the test set, gate, write.

Nothing appears at ``out`` unless the gate passes: the candidate is a temp file in the same folder,
renamed into place only then.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from digitkit.converters.data import ConversionData
from digitkit.converters.errors import ConversionError, GateFailed
from digitkit.converters.flatbuffer import embed_metadata, float_ops, op_counts, read_io, read_ops
from digitkit.converters.report import ConversionReport, runtime_metadata, sidecar
from digitkit.converters.tflite import NUM_CLASSES, ConvertConfig, convert_keras, load_keras
from digitkit.converters.verify import Rejection, layer_errors, rejection, verify
from digitkit.runtime.fileio import atomic_write_json, fsync_dir, sidecar_path, temp_beside
from digitkit.runtime.interpreter import METADATA_NAME, NOT_A_DIGIT_CONVENTION, ModelMetadata, encode_metadata


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on the folder itself (no lock file is left behind) for the duration of the block."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def rejected_path(out: str | os.PathLike[str]) -> Path:
    """``int8.tflite`` -> ``int8.rejected.tflite``: where --keep-rejected keeps a model that failed the gate."""
    out = Path(out)
    return out.with_name(f"{out.stem}.rejected{out.suffix}")


def layers_path(out: str | os.PathLike[str]) -> Path:
    """``int8.tflite`` -> ``int8.layers.json``: the --debug-layers report."""
    out = Path(out)
    return out.with_name(f"{out.stem}.layers.json")


def _probe_writable(folder: Path) -> bool:
    # os.access says yes to root on read-only mounts; creating a file is the real test.
    try:
        fd, name = tempfile.mkstemp(prefix=".digitkit-probe.", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


def check_out(out: str | os.PathLike[str]) -> Path:
    """Validate ``--out`` before any work: a .tflite path in a folder we can write (created later if missing).

    Raises:
        ConversionError: wrong suffix, a folder, or an unwritable location.
    """
    out = Path(out)
    if out.suffix != ".tflite":
        raise ConversionError(f"--out {out} must end in .tflite")
    if out.is_dir():
        raise ConversionError(f"--out {out} is a folder; pass a file name like {out / 'model.tflite'}")
    folder = out.parent if str(out.parent) else Path(".")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConversionError(f"--out {out}: {existing} is a file, not a folder")
    if not _probe_writable(existing):
        raise ConversionError(f"--out {out}: folder {existing} is not writable; choose another --out")
    return out


def make_config(config: ConvertConfig | None, overrides: dict[str, Any]) -> ConvertConfig:
    """``config`` (or the defaults) with ``overrides`` applied, validated."""
    known = {f.name for f in fields(ConvertConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConversionError(f"unknown conversion setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    config = replace(config or ConvertConfig(), **overrides)
    config.validate()
    return config


def _measure_rejection(graph: bytes, out: Path, metadata: ModelMetadata, data: ConversionData,
                       config: ConvertConfig) -> Rejection:
    """The "not a digit" threshold of a converted graph, measured on the validation digits and non-digits
    through the runtime (from a temp file beside ``out``, deleted after)."""
    assert data.val_digits is not None and data.val_negatives is not None
    tmp = temp_beside(out)
    try:
        tmp.write_bytes(graph)
        return rejection(tmp, metadata, data.val_digits, data.val_negatives, config.keep_digits, config.threads)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def model_metadata(keras_model: Any) -> ModelMetadata:
    """What the runtime must know of a model's outputs: 10 digits, or 10 digits and "not a digit" (index 10)."""
    classes = int(keras_model.outputs[0].shape[-1])
    if classes == NUM_CLASSES:
        return ModelMetadata()
    # The runtime's convention for an 11th output, less its default threshold: this one is measured.
    return ModelMetadata(**{**NOT_A_DIGIT_CONVENTION, "reject_threshold": None})


def convert(model: str | os.PathLike[str], out: str | os.PathLike[str], config: ConvertConfig | None = None,
            *, data: ConversionData, **overrides: Any) -> ConversionReport:
    """Convert, verify, gate, and write ``out`` plus ``out``'s .json (the CLI's twin, which finds and
    splits the dataset, is :func:`digitkit.toolkit.convert.convert`).

    Args:
        model: the float .keras model ((28, 28, 1) in, 10 probabilities out).
        out: the .tflite to write (runtime metadata embedded); its record ``out.json`` (``m.tflite.json``)
            goes beside it.
        config: the settings (``ConvertConfig()`` if None); keyword ``overrides`` replace fields.
        data: the calibration images and the test set (see :func:`digitkit.converters.data.prepare`).

    Returns:
        The ConversionReport (also the sidecar's "report").

    Raises:
        ConversionError: bad settings or input (exit 2), or an int8 model with a float operator.
        GateFailed: the accuracy drop exceeds ``max_drop`` (exit 3); ``.report`` holds the figures.
    """
    config = make_config(config, overrides)
    out = check_out(out)
    source = Path(model)
    keras_model = load_keras(source)
    int8 = config.mode == "int8"
    io = config.resolved_io
    metadata = model_metadata(keras_model)
    calibration = data.calibration
    if metadata.not_a_digit is not None and data.calibration_negatives is not None:
        calibration = np.concatenate([calibration, data.calibration_negatives])

    start = time.perf_counter()
    graph = convert_keras(keras_model, config.mode, io, calibration if int8 else None)
    conversion_seconds = time.perf_counter() - start
    out.parent.mkdir(parents=True, exist_ok=True)
    nad = None
    if metadata.not_a_digit is not None and data.val_digits is not None and data.val_negatives is not None:
        # The threshold is measured on the converted graph itself (its int8 outputs), on validation data.
        nad = _measure_rejection(graph, out, metadata, data, config)
        metadata = replace(metadata, reject_threshold=nad.threshold)
    # What the runtime needs travels inside the model, embedded before verification: the bytes verified are
    # the bytes written. `conversion` lets a reader (bench) name the mode without guessing from dtypes.
    payload = encode_metadata(runtime_metadata(metadata), conversion={"mode": config.mode, "io": io})
    flat = embed_metadata(graph, METADATA_NAME, payload)
    float32_bytes = len(flat) if config.mode == "float32" else len(
        embed_metadata(convert_keras(keras_model, "float32"), METADATA_NAME, payload))

    ops = read_ops(flat)
    floating = float_ops(ops, float_io=io == "float32")
    if int8 and floating:
        names = ", ".join(f"{op.op}#{op.index}" for op in floating[:5])
        raise ConversionError(f"int8 conversion left {len(floating)} operator(s) on float tensors ({names}); "
                              "the model uses a layer without an int8 kernel")
    io_info = read_io(flat)

    tmp = temp_beside(out)
    try:
        with open(tmp, "wb") as fh:
            fh.write(flat)
            fh.flush()
            os.fsync(fh.fileno())
        start = time.perf_counter()
        result = verify(keras_model, tmp, data.x_test, data.y_test, threads=config.threads)
        verification_seconds = time.perf_counter() - start
        layers = layer_errors(keras_model, data.calibration, data.debug_images) if config.debug_layers else None

        passed = result.drop_pp <= config.max_drop
        kept = rejected_path(out) if not passed and config.keep_rejected else None
        report = ConversionReport(
            model_path=str(out), source_model=str(source), mode=config.mode, io=io,
            input_dtype=io_info.input_dtype, input_scale=io_info.input_scale,
            input_zero_point=io_info.input_zero_point, output_dtype=io_info.output_dtype,
            calibration_samples=int(len(data.calibration)) if int8 else 0,
            test_size=result.test_size, float_accuracy=result.float_accuracy,
            converted_accuracy=result.converted_accuracy, drop_pp=result.drop_pp, agreement=result.agreement,
            max_drop_pp=config.max_drop, passed=passed, size_bytes=len(flat), float32_tflite_bytes=float32_bytes,
            compression_ratio=len(flat) / float32_bytes, conversion_seconds=round(conversion_seconds, 3),
            verification_seconds=round(verification_seconds, 3), backend=result.backend,
            op_counts=op_counts(ops), float_ops=len(floating),
            rejected_path=str(kept) if kept else None,
            layers_path=str(layers_path(out)) if layers is not None else None, read_accuracy=result.read_accuracy,
            not_a_digit=nad.to_dict() if nad is not None else None,
        )
        if layers is not None:  # written whether or not the gate passes: it is how a failure is debugged
            atomic_write_json(layers_path(out), {"model": str(out), "source_model": str(source),
                                                 "layers": [layer.to_dict() for layer in layers]})
        target = out if passed else kept
        if target is not None:
            provenance = {**data.provenance(), "calibration_seed": config.calibration_seed,
                          "calibration_from": f"training split (validation fraction {config.val_fraction} "
                                              f"held out, seed {data.split_seed}, as `digitkit train` recorded)"}
            record = sidecar(report, flat, source, provenance, config.to_dict(), metadata)
            # Two runs converting to the same --out take turns here, so the model and its record always come
            # from the same run; a kill between the two renames leaves a record whose model_sha256 does not
            # match, and the runtime reads only the model anyway.
            with _folder_lock(target.parent):
                os.replace(tmp, target)
                atomic_write_json(sidecar_path(target), record)
                fsync_dir(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    if not passed:
        where = f"kept as {kept}" if kept else f"nothing written to {out} (pass --keep-rejected to keep it)"
        raise GateFailed(
            f"{config.mode} model lost {result.drop_pp:.2f} pp of test accuracy "
            f"({result.float_accuracy:.2%} -> {result.converted_accuracy:.2%}), more than --max-drop "
            f"{config.max_drop:g} pp; {where}", report=report)
    return report

"""The ``digitkit convert`` verb: parse options into a ConvertConfig, call ``digitkit.converters.convert``, print.

Registered on the one typer app by ``toolkit/cli.py``. It lives in the toolkit because it reads the dataset
(the converters package never does).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from digitkit.converters.errors import GateFailed
from digitkit.converters.tflite import IO_TYPES, MODES, ConvertConfig

_D = ConvertConfig()  # the defaults live in the dataclass, not here


def _print(report: object, as_json: bool) -> None:
    from digitkit.converters.report import ConversionReport, layers_table, report_table
    from digitkit.converters.verify import LayerError
    from digitkit.runtime.fileio import strict_json

    assert isinstance(report, ConversionReport)
    if as_json:
        typer.echo(json.dumps(strict_json(report.to_dict()), allow_nan=False))  # a layer's NaN ratio: null
        return
    console = Console()
    console.print(report_table(report))
    if report.layers_path:
        rows = json.loads(Path(report.layers_path).read_text(encoding="utf-8"))["layers"]
        console.print(layers_table([LayerError(**row) for row in rows]))


def convert_command(
    model: Annotated[Path, typer.Argument(
        metavar="MODEL", help="The float .keras model (28x28x1 in, 10 probabilities out).")],
    out: Annotated[Path, typer.Option("--out", metavar="FILE", help="The .tflite to write (its runtime metadata "
                                      "inside it); FILE.json, the report and provenance for people, beside it.")],
    mode: Annotated[str, typer.Option("--mode", metavar="MODE", help=f"One of: {', '.join(MODES)}.")] = _D.mode,
    io: Annotated[str | None, typer.Option("--io", metavar="TYPE",
                                           help=f"Input/output type for int8: {', '.join(IO_TYPES)} "
                                           "(default uint8: raw 0-255 pixels in).")] = _D.io,
    calibration_samples: Annotated[int, typer.Option(
        "--calibration-samples", metavar="N", help="Training-split images (balanced, seeded) to calibrate int8.")
    ] = _D.calibration_samples,
    max_drop: Annotated[float, typer.Option(
        "--max-drop", metavar="PP", help="Largest test-accuracy drop, in percentage points, that passes the gate.")
    ] = _D.max_drop,
    data_dir: Annotated[str | None, typer.Option(
        "--data-dir", metavar="DIR",
        help="MNIST-format folder or mnist.npz. Default: $DIGITKIT_DATA, then the Keras cache.")
    ] = _D.data_dir,
    debug_layers: Annotated[bool, typer.Option(
        "--debug-layers", help="Per-layer int8 error report (printed, and FILE.layers.json).")
    ] = _D.debug_layers,
    keep_rejected: Annotated[bool, typer.Option(
        "--keep-rejected", help="If the gate fails, keep the model as FILE.rejected.tflite.")
    ] = _D.keep_rejected,
    threads: Annotated[int | None, typer.Option("--threads", metavar="N", help="Interpreter threads for verification.")
                       ] = _D.threads,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
) -> None:
    """Quantize a float Keras model to TFLite (int8 by default), verify it on the test set, gate on the drop.

    Exit codes: 0 written · 2 bad input, nothing written · 3 accuracy gate failed, nothing at --out.
    """
    from digitkit.toolkit.convert import convert

    config = ConvertConfig(mode=mode, io=io, calibration_samples=calibration_samples, max_drop=max_drop,
                           data_dir=data_dir, debug_layers=debug_layers, keep_rejected=keep_rejected,
                           threads=threads)
    try:
        report = convert(model, out, config)
    except GateFailed as exc:
        if exc.report is not None:
            _print(exc.report, as_json)
        raise
    _print(report, as_json)

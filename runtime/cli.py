"""``digitkit classify``: the verb's options and output. toolkit/cli.py registers it (this module must not
import toolkit); the work is done by :func:`runtime.classifier.classify`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from runtime.classifier import ClassifyConfig, ReadError, Reading
from runtime.classifier import classify as run_classify

_DEFAULTS = ClassifyConfig()


def classify(
    paths: Annotated[list[str], typer.Argument(help="Image files, folders (searched recursively) and glob patterns.",
                                               show_default=False, metavar="PATH")],
    model: Annotated[Path | None, typer.Option("--model", help="A digit .tflite (28x28x1 in, 10 classes out). "
                                               "Default: the model shipped in the package.",
                                               exists=True, dir_okay=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line per image.")] = False,
    min_confidence: Annotated[float, typer.Option(
        "--min-confidence", min=0.0, max=1.0,
        help="Candidates the model is less sure of are not reported (what this rejects: see the README).")
    ] = _DEFAULTS.min_confidence,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="Interpreter threads.")] = None,
    save_annotated: Annotated[Path | None, typer.Option(
        "--save-annotated", help="Write copies of the images with boxes, labels and confidences to this folder.",
        file_okay=False)] = None,
    backend: Annotated[str | None, typer.Option(
        "--backend", help="litert or tflite-runtime (default: the first installed).")] = None,
) -> None:
    """Read the handwritten digits in images (one line of digits per image), with no TensorFlow.

    Exit code 1 if any input could not be read (the others are still read and printed).
    """
    config = ClassifyConfig(model_path=str(model) if model else None, min_confidence=min_confidence,
                            threads=threads, backend=backend)
    results = run_classify(paths, config, annotate_dir=save_annotated)
    failed = 0
    if as_json:
        for result in results:
            failed += isinstance(result, ReadError)
            typer.echo(json.dumps(result.to_dict()))
    else:
        failed = _table(results)
    if failed:
        raise typer.Exit(1)


def _table(results: object) -> int:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="digitkit classify")
    table.add_column("file")
    table.add_column("reading", justify="right")
    table.add_column("confidences")
    failed = 0
    for r in results:  # type: ignore[attr-defined]
        if isinstance(r, Reading):
            conf = " ".join(f"{d.confidence:.2f}" for d in r.digits)
            table.add_row(r.path, r.text or "[dim](no digits)[/dim]", conf)
        else:
            failed += 1
            table.add_row(r.path, "[red]error[/red]", f"[red]{r.error}[/red]")
    Console().print(table)
    return failed

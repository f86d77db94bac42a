"""``digitkit classify``: the verb's options and output. toolkit/cli.py registers it (this module must not
import toolkit); the work is done by :func:`digitkit.runtime.classifier.classify`."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer

from digitkit.runtime.classifier import ClassifyConfig, ReadError, Reading
from digitkit.runtime.classifier import classify as run_classify

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
    explain: Annotated[Path | None, typer.Option(
        "--explain", help="Write one picture per image of how it was read (ink map, kept and dropped candidates, "
                          "cuts tried, the 28x28 tiles with label and score) to this folder.",
        file_okay=False)] = None,
    backend: Annotated[str | None, typer.Option(
        "--backend", help="litert or tflite-runtime (default: the first installed).")] = None,
    max_pixels: Annotated[int, typer.Option(
        "--max-pixels", min=1,
        help="Refuse a file whose header claims more pixels than this, before decoding it (default: Pillow's "
             "limit, 89.5 MP: a 48 MP phone photo passes, a decompression bomb does not).")
    ] = _DEFAULTS.max_pixels,
) -> None:
    """Read the handwritten digits in images (one line of digits per image), with no TensorFlow.

    Exit code 1 if any input could not be read (the others are still read and printed, each bad file with
    its own one-line error).
    """
    config = ClassifyConfig(model_path=str(model) if model else None, min_confidence=min_confidence,
                            threads=threads, backend=backend, max_pixels=max_pixels)
    results = run_classify(paths, config, annotate_dir=save_annotated, explain_dir=explain)
    failed = 0
    if as_json:
        for result in results:
            failed += isinstance(result, ReadError)
            typer.echo(json.dumps(result.to_dict()))
    else:
        failed = _table(results)
    if failed:
        raise typer.Exit(1)


_HEAD_ROWS = 256  # rows looked at to size the file column; the rest stream through with that width


def _table(results: Iterable[Reading | ReadError]) -> int:
    """Print file | reading | confidences (or the error) row by row, as results arrive: a rich Table would
    hold every row until the end, and memory must not grow with the number of files."""
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False, soft_wrap=True)
    it = iter(results)
    head = list(itertools.islice(it, _HEAD_ROWS))
    width = max([len("file"), *(len(r.path) for r in head)])
    console.print(f"[bold]{'file':<{width}}  {'reading':>8}  confidences[/bold]")
    failed = images = digits = 0
    for r in itertools.chain(head, it):
        images += 1
        path = escape(r.path) + " " * max(0, width - len(r.path))
        if isinstance(r, Reading):
            digits += len(r.digits)
            conf = " ".join(f"{d.confidence:.2f}" for d in r.digits)
            text = f"{r.text:>8}" if r.text else " [dim]no digits[/dim]"  # "no digits" is 9 wide, right-aligned
            console.print(f"{path}  {text}  {conf}")
        else:
            failed += 1
            console.print(f"{path}     [red]error  {escape(r.error)}[/red]")
    plural = lambda n, word: f"{n} {word}{'s' * (n != 1)}"  # noqa: E731
    console.print(f"{plural(images, 'file')}: {images - failed} read ({plural(digits, 'digit')}), {failed} failed")
    return failed

"""The device verbs: ``digitkit classify`` (its options and output are here) and ``digitkit camera``
(``cli_camera``). ``digitkit.cli`` loads this module's ``app`` for those two verbs only; it must not import the
toolkit or the converters. The work is done by :func:`digitkit.runtime.classifier.classify`."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer

from digitkit.errors import ExitCode
from digitkit.runtime.classifier import ClassifyConfig, ReadError, Reading
from digitkit.runtime.classifier import classify as run_classify

_DEFAULTS = ClassifyConfig()


def classify(
    paths: Annotated[list[str], typer.Argument(help="Image files, folders (searched recursively) and glob patterns.",
                                               show_default=False, metavar="PATH")],
    model: Annotated[str | None, typer.Option(
        "--model", metavar="NAME|FILE",
        help="A shipped model, fast (the default) or accurate, or a digit .tflite (28x28x1 in).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line per image.")] = False,
    min_confidence: Annotated[float, typer.Option(
        "--min-confidence", metavar="P", min=0.0, max=1.0,
        help="Candidates the model is less sure of are not reported (what this rejects: see the README).")
    ] = _DEFAULTS.min_confidence,
    threads: Annotated[int | None, typer.Option("--threads", metavar="N", min=1, help="Interpreter threads.")] = None,
    save_annotated: Annotated[Path | None, typer.Option(
        "--save-annotated", metavar="DIR",
        help="Write copies of the images with boxes, labels and confidences to this folder "
        "(not an input folder, nor inside one). Existing files are never replaced: a taken name gets -2, -3, ...",
        file_okay=False)] = None,
    explain: Annotated[Path | None, typer.Option(
        "--explain", help="Write one picture per image of how it was read (ink map, kept and dropped candidates, "
                          "cuts tried, the 28x28 tiles with label and score) to this folder.",
        file_okay=False)] = None,
    backend: Annotated[str | None, typer.Option(
        "--backend", metavar="NAME", help="litert or tflite-runtime (default: the first installed).")] = None,
    max_pixels: Annotated[int, typer.Option(
        "--max-pixels", metavar="N", min=1,
        help="Refuse a file whose header claims more pixels than this, before decoding it (default: Pillow's "
             "limit, 89.5 MP: a 48 MP phone photo passes, a decompression bomb does not).")
    ] = _DEFAULTS.max_pixels,
    cut_only: Annotated[bool, typer.Option(
        "--cut-only", help="Take touching digits apart only by cutting them, without first reading the blob "
                           "whole with the shipped sequence model.")] = False,
) -> None:
    """Read the handwritten digits in images (one line of digits per image), with no TensorFlow.

    Exit codes: 0 all read · 1 some inputs could not be read (the others are still read and printed, each bad
    file with its own one-line error) · 2 bad option or model.
    """
    config = ClassifyConfig(model_path=model, min_confidence=min_confidence,
                            threads=threads, backend=backend, max_pixels=max_pixels, read_whole=not cut_only)
    results = run_classify(paths, config, annotate_dir=save_annotated, explain_dir=explain)
    failed = 0
    if as_json:
        for result in results:
            failed += isinstance(result, ReadError)
            typer.echo(json.dumps(result.to_dict()))
    else:
        failed = _table(results)
    if failed:
        raise typer.Exit(ExitCode.SOME_FAILED)


def printable(text: str) -> str:
    """``text`` with control characters, newlines and undecodable bytes written as escapes (``\\x1b``,
    ``\\n``, ``\\udcff``): a file name cannot move the cursor, recolour the terminal or forge a row."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for ch in text)


_HEAD_ROWS = 256  # rows looked at to size the file column; the rest stream through with that width


def _table(results: Iterable[Reading | ReadError]) -> int:
    """Print file | reading | confidences (or the error) row by row, as results arrive: a rich Table would
    hold every row until the end, and memory must not grow with the number of files."""
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False, soft_wrap=True)
    it = iter(results)
    head = list(itertools.islice(it, _HEAD_ROWS))
    width = max([len("file"), *(len(printable(r.path)) for r in head)])
    console.print(f"[bold]{'file':<{width}}  {'reading':>8}  confidences[/bold]")
    failed = images = digits = 0
    for r in itertools.chain(head, it):
        images += 1
        shown = printable(r.path)
        path = escape(shown) + " " * max(0, width - len(shown))  # escape(): "[red]" in a name is not markup
        if isinstance(r, Reading):
            digits += len(r.digits)
            conf = " ".join(f"{d.confidence:.2f}" for d in r.digits)
            text = f"{r.text:>8}" if r.text else " [dim]no digits[/dim]"  # "no digits" is 9 wide, right-aligned
            pages = f"  [dim](page 1 of {r.pages} read)[/dim]" if r.pages > 1 else ""
            console.print(f"{path}  {text}  {conf}{pages}")
        else:
            failed += 1
            console.print(f"{path}     [red]error  {escape(printable(r.error))}[/red]")
    plural = lambda n, word: f"{n} {word}{'s' * (n != 1)}"  # noqa: E731
    console.print(f"{plural(images, 'file')}: {images - failed} read ({plural(digits, 'digit')}), {failed} failed")
    return failed


def _register() -> typer.Typer:
    """The runtime's verbs on their own app; ``digitkit.cli`` loads it for ``classify`` and ``camera`` only."""
    from digitkit.runtime.cli_camera import camera
    from digitkit.verbs import register, verb_app

    verbs = verb_app()
    register(verbs, classify, "classify")
    register(verbs, camera, "camera")
    return verbs


app = _register()

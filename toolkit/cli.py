"""The toolkit's verbs (train, convert, evaluate, bench, pipeline, models): thin skins over library functions.

``digitkit.cli`` loads this module only when one of these verbs runs, so the device verbs never import it.
Each verb parses options into a config, validates it before drawing anything, calls one library function and
prints the result. Progress is a live bar on a terminal and one plain line per step when output goes to a file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from digitkit.toolkit.cli_convert import convert_command
from digitkit.toolkit.linetrain import LineTrainConfig  # no TensorFlow at import: the one copy of the defaults
from digitkit.toolkit.pipeline_types import PipelineConfig  # no TensorFlow at import: the one copy of the defaults
from digitkit.toolkit.train import TrainConfig
from digitkit.verbs import register, verb_app

app = verb_app()
console = Console()


def command(name: str | None = None) -> Any:
    """``@command()`` registers a guarded verb on this module's app."""

    def deco(fn: Any) -> Any:
        register(app, fn, name)
        return fn

    return deco


def _line(text: str) -> None:
    """One progress line for a log file (rich's live display would only show up, frozen, at the end)."""
    console.print(text, highlight=False, soft_wrap=True)


def _summary(title: str, rows: list[tuple[str, str]]) -> None:
    """A run's closing two-column table (what was made, and its figures)."""
    table = Table(title=title)
    table.add_column("", overflow="fold")
    table.add_column("value", justify="right", overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


DataDir = Annotated[
    str | None,
    typer.Option("--data-dir", metavar="DIR", help="MNIST-format folder (IDX files) or mnist.npz. Default: "
                 "$DIGITKIT_DATA, then ~/.keras/datasets/mnist.npz, then the Keras download."),
]


@command()
def train(
    out: Annotated[Path, typer.Option(
        "--out", metavar="FILE",
        help="Where to save the model (.keras); FILE.json (the training record) goes beside it.")
    ] = Path(TrainConfig.out),
    arch: Annotated[str, typer.Option("--arch", metavar="NAME", help="Architecture; see `digitkit models`.")
                    ] = TrainConfig.arch,
    epochs: Annotated[int, typer.Option("--epochs", metavar="N", min=1)] = TrainConfig.epochs,
    batch_size: Annotated[int, typer.Option("--batch-size", metavar="N", min=1)] = TrainConfig.batch_size,
    seed: Annotated[int, typer.Option("--seed", metavar="N")] = TrainConfig.seed,
    data_dir: DataDir = None,
    no_augment: Annotated[bool, typer.Option("--no-augment", help="Turn off augmentation (affine, blur).")] = False,
) -> None:
    """Train a float CNN on MNIST and save it with its training record (FILE.json).

    Exit codes: 0 trained · 2 bad option, data or output path.
    """
    from digitkit.toolkit.train import check_config
    from digitkit.toolkit.train import train as run_train

    config = TrainConfig(out=str(out), arch=arch, epochs=epochs, batch_size=batch_size, seed=seed,
                         data_dir=data_dir, augment=not no_augment)
    check_config(config)  # a bad --arch fails here, before any progress is drawn

    def metrics(logs: dict[str, float]) -> str:
        text = f"loss {logs.get('loss', float('nan')):.4f} acc {logs.get('accuracy', float('nan')):.4f}"
        return text + (f" val_acc {logs['val_accuracy']:.4f}" if "val_accuracy" in logs else "")

    if console.is_terminal:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress(TextColumn("[bold]training {task.fields[arch]}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[metrics]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                      console=console, transient=False) as progress:
            task = progress.add_task("train", total=epochs, arch=arch, metrics="")
            result = run_train(config, on_epoch=lambda epoch, total, logs: progress.update(
                task, completed=epoch, metrics=metrics(logs)))
    else:
        result = run_train(config, on_epoch=lambda epoch, total, logs: _line(
            f"training {arch}: epoch {epoch}/{total} {metrics(logs)}"))
    _summary(f"trained {result.arch}", [
        ("model", result.model_path), ("training record", result.sidecar_path),
        ("parameters", f"{result.params:,}"), ("MACs", f"{result.macs:,}"),
        ("train / val / test images", f"{result.train_size} / {result.val_size} / {result.test_size}"),
        ("epochs", str(result.epochs)), ("seed", str(result.seed)),
        ("validation accuracy", f"{result.val_accuracy:.2%}"), ("test accuracy", f"{result.test_accuracy:.2%}"),
        ("training time", f"{result.train_seconds:.0f} s"),
    ])


@command()
def combine(
    models: Annotated[list[Path], typer.Argument(metavar="MODEL...", help="Trained .keras networks, in the "
                                                 "order the ensemble takes them (see --arch).")],
    out: Annotated[Path, typer.Option("--out", metavar="FILE", help="Where to save the ensemble (.keras); "
                                      "FILE.json (its record) goes beside it.")] = Path("models/ensemble.keras"),
    arch: Annotated[str, typer.Option("--arch", metavar="NAME", help="The ensemble: seed-strided (a seed-bn and "
                                      "a strided network) or strided-pair (two strided).")] = "seed-strided",
    data_dir: DataDir = None,
) -> None:
    """Average trained networks in one graph (an ensemble model for `digitkit convert`), and measure it.

    Exit codes: 0 written · 2 bad option, model, record or data.
    """
    from digitkit.toolkit.combine import combine as run_combine

    result = run_combine([str(m) for m in models], out, arch=arch, data_dir=data_dir)
    _summary(f"combined {result.arch}", [
        ("model", result.model_path), ("record", result.sidecar_path),
        ("parameters", f"{result.params:,}"), ("MACs", f"{result.macs:,}"),
        ("validation accuracy, members", " / ".join(f"{a:.2%}" for a in result.member_val_accuracy)),
        ("validation accuracy, ensemble", f"{result.val_accuracy:.2%}"),
        ("test accuracy, members", " / ".join(f"{a:.2%}" for a in result.member_test_accuracy)),
        ("test accuracy, ensemble", f"{result.test_accuracy:.2%}"),
    ])


@command()
def evaluate(
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="A .keras or .tflite model.")],
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
) -> None:
    """Test accuracy, per-class accuracy and confusion matrix of a .keras or .tflite model.

    Exit codes: 0 evaluated · 2 bad model or data.
    """
    from digitkit.toolkit.evaluate import evaluate as run_evaluate

    result = run_evaluate(model, data_dir=data_dir)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), allow_nan=False))  # strict JSON: a NaN here is a bug, not output
        return
    console.print(f"[bold]{result.model_path}[/bold] ({result.format}) on {result.test_size} test images "
                  f"from {result.data_source}: accuracy [bold]{result.accuracy:.2%}[/bold]")
    table = Table(title="confusion matrix (rows: true, columns: predicted)", padding=(0, 0))
    table.add_column("true")
    for c in range(len(result.confusion)):
        table.add_column(str(c), justify="right")
    table.add_column("acc", justify="right")
    for c, row in enumerate(result.confusion):
        acc = result.per_class_accuracy[c]
        table.add_row(str(c), *[f" {v}" for v in row], " -" if acc is None else f" {acc:.1%}")  # "-": no such images
    console.print(table)


@command("models")
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per line.")] = False,
) -> None:
    """The registered architectures with their parameter counts and MACs (no TensorFlow needed).

    Exit codes: 0.
    """
    from digitkit.toolkit.catalog import catalog

    infos = catalog()
    if as_json:
        for info in infos:
            typer.echo(json.dumps(info.to_dict()))
        return
    table = Table(title="architectures (--arch)")
    for col, justify in (("name", "left"), ("parameters", "right"), ("MACs", "right"), ("description", "left")):
        table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for info in infos:
        table.add_row(info.name, f"{info.params:,}", f"{info.macs:,}", info.description)
    console.print(table)


@command()
def bench(
    models: Annotated[list[Path], typer.Argument(
        metavar="MODEL", help="Models to compare (.keras / .tflite); the first is the reference for ratios.")],
    data_dir: DataDir = None,
    threads: Annotated[str, typer.Option("--threads", metavar="N[,N...]",
                                         help="Comma-separated thread counts, e.g. 1,2.")] = "1",
    runs: Annotated[int, typer.Option("--runs", metavar="N", min=1, help="Timed single-image calls per row.")] = 500,
    warmup: Annotated[int, typer.Option("--warmup", metavar="N", min=0, help="Untimed calls before timing.")] = 50,
    pin_cpu: Annotated[str | None, typer.Option(
        "--pin-cpu", metavar="CPU[,CPU...]",
        help="Pin inference to these CPUs, e.g. 0 (with --threads 1: a Raspberry-Pi-class run).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", metavar="N", min=1,
                                              help="Use only the first N test images.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", metavar="N", min=1,
                                            help="Batch size of the throughput pass.")] = 256,
    json_path: Annotated[Path | None, typer.Option(
        "--json", metavar="FILE", help="Write the results as JSON (schema digitkit.bench/1).")] = None,
    report_dir: Annotated[Path | None, typer.Option(
        "--report", metavar="DIR", help="Write report.md and PNG plots into this folder.")] = None,
) -> None:
    """Compare models side by side: size, load time, accuracy, latency percentiles, throughput, memory.

    Exit codes: 0 measured · 1 a measuring process died · 2 bad option, model or data.
    """
    from digitkit.toolkit.bench import BenchConfig, check_config, parse_int_list
    from digitkit.toolkit.bench import bench as run_bench
    from digitkit.toolkit.report import profile_note, terminal_table

    config = BenchConfig(models=tuple(str(m) for m in models), data_dir=data_dir,
                         threads=parse_int_list(threads, "--threads"), runs=runs, warmup=warmup,
                         pin_cpu=parse_int_list(pin_cpu, "--pin-cpu") if pin_cpu is not None else None,
                         limit=limit, batch_size=batch_size, json_path=str(json_path) if json_path else None,
                         report_dir=str(report_dir) if report_dir else None)
    check_config(config)
    if console.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("[bold]benchmarking"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                      transient=True) as progress:
            task = progress.add_task("", total=None)
            report = run_bench(config=config, on_result=lambda done, total, row: progress.update(
                task, completed=done, total=total, description=f"{row.label}: p50 {row.latency_ms.p50:.3f} ms"))
    else:
        report = run_bench(config=config, on_result=lambda done, total, row: _line(
            f"benchmarked {done}/{total}: {row.label}: p50 {row.latency_ms.p50:.3f} ms"))
    # A log file can take the whole table; a terminal gets the columns that fit its width.
    wide = console if console.is_terminal else Console(width=160)
    wide.print(terminal_table(report, wide.width))
    console.print(profile_note(report))
    if config.json_path:
        console.print(f"JSON: {config.json_path}")
    if config.report_dir:
        console.print(f"report: {Path(config.report_dir) / 'report.md'}")


@command()
def pipeline(
    out: Annotated[Path, typer.Option("--out", metavar="DIR",
                                      help="Folder for every stage's artefacts and report.md.")] = Path(
        PipelineConfig.out),
    data_dir: DataDir = None,
    arch: Annotated[str, typer.Option("--arch", metavar="NAME", help="Architecture; see `digitkit models`.")
                    ] = PipelineConfig.arch,
    epochs: Annotated[int, typer.Option("--epochs", metavar="N", min=1)] = PipelineConfig.epochs,
    max_drop: Annotated[float | None, typer.Option(
        "--max-drop", metavar="PP",
        help="Test accuracy the int8 model may lose, in points (default: the converter's).")] = None,
    threads: Annotated[str, typer.Option("--threads", metavar="N[,N...]",
                                         help="Benchmark thread counts, e.g. 1,2.")] = "1",
    runs: Annotated[int, typer.Option("--runs", metavar="N", min=1,
                                      help="Benchmark: timed single-image calls per row.")] = PipelineConfig.runs,
    force: Annotated[bool, typer.Option("--force", help="Run every stage again, even if finished.")] = False,
) -> None:
    """Train -> convert (int8, float32) -> verify -> bench -> classify -> report.md, reusing finished stages.

    Exit codes: 0 done, gate passed · 2 bad option or data · 3 the int8 model failed the accuracy gate
    (the report is still written).
    """
    from digitkit.converters.errors import GateFailed
    from digitkit.toolkit.bench import parse_int_list
    from digitkit.toolkit.pipeline import check_config
    from digitkit.toolkit.pipeline import pipeline as run_pipeline
    from digitkit.toolkit.pipeline_report import bar_rows, headline_rows
    from digitkit.toolkit.pipeline_types import STAGES, StageEvent

    config = PipelineConfig(out=str(out), data_dir=data_dir, arch=arch, epochs=epochs, max_drop=max_drop,
                            threads=parse_int_list(threads, "--threads"), runs=runs, force=force)
    check_config(config)
    if console.is_terminal:
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        with Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[stage]:<9}"), BarColumn(),
                      TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as progress:
            tasks = {name: progress.add_task("waiting", stage=name, total=None, start=False) for name in STAGES}

            def on_event(event: StageEvent) -> None:
                task = tasks[event.stage]
                if event.state == "start":
                    progress.start_task(task)
                    progress.update(task, description="running")
                elif event.state == "progress":
                    progress.update(task, completed=event.completed, total=event.total, description=event.message)
                else:
                    progress.update(task, completed=1, total=1, description=f"[green]{event.message}")
                    progress.stop_task(task)

            result = run_pipeline(config, on_event=on_event)
    else:
        def print_event(event: StageEvent) -> None:
            text = {"start": "started", "reused": "reused (finished earlier)"}.get(event.state, event.message)
            _line(f"{event.stage}: {text}" + (" (done)" if event.state == "done" else ""))

        result = run_pipeline(config, on_event=print_event)
    table = Table(title=f"digitkit pipeline: {result.out} ({result.seconds:.0f} s)")
    table.add_column("", overflow="fold")
    table.add_column("value", justify="right", overflow="fold")
    for key, value in headline_rows(result.summary):
        table.add_row(key, value if value != "FAILED" else "[red]FAILED")
    console.print(table)
    bars = Table(title="bars (measured side by side)")
    for col in ("bar", "target", "measured", "met"):
        bars.add_column(col, justify="left" if col == "bar" else "right", overflow="fold")
    for row in bar_rows(result.summary):
        bars.add_row(*row)
    console.print(bars)
    reused = [s.name for s in result.stages if s.status == "reused"]
    if reused:
        console.print(f"reused finished stages: {', '.join(reused)} (--force runs them again)")
    console.print(f"report: {result.report_path}")
    if not result.gate_passed:
        raise GateFailed("the int8 model failed the accuracy gate; see the report")


command("convert")(convert_command)


@command("train-lines")
def train_lines_command(
    out: Annotated[Path, typer.Option("--out", metavar="FILE", help="Where to save the float model (.keras); "
                                      "FILE.json (config, figures, history) goes beside it.")
                   ] = Path("runs/lines.keras"),
    tflite: Annotated[Path, typer.Option("--tflite", metavar="FILE", help="Where to write the int8 model.")
                      ] = Path("runs/lines_int8.tflite"),
    epochs: Annotated[int, typer.Option("--epochs", metavar="N", min=1)] = LineTrainConfig.epochs,
    lines: Annotated[int, typer.Option("--lines", metavar="N", min=64, help="Training strips, made once.")
                     ] = LineTrainConfig.lines,
    seed: Annotated[int, typer.Option("--seed", metavar="N")] = 0,
    learning_rate: Annotated[float, typer.Option("--learning-rate", metavar="LR", min=1e-6)
                             ] = LineTrainConfig.learning_rate,
    context: Annotated[int, typer.Option("--context", metavar="N", min=0, help="Residual blocks that let each "
                                         "step see further along the strip (0: the first shipped network).")
                       ] = LineTrainConfig.context,
    init: Annotated[Path | None, typer.Option("--init", metavar="FILE", help="Start from this trained sequence "
                                              "model (.keras); blocks it lacks start as the identity.")] = None,
    shift: Annotated[int, typer.Option("--shift", metavar="N", min=0, max=4, help="Move each training strip "
                                       "right by 0 to N columns at random.")] = LineTrainConfig.shift,
    data_dir: DataDir = None,
) -> None:
    """Train the sequence model that reads touching digits whole, and convert it to int8.

    The runtime reads blobs of touching digits with runtime/models/digitkit_lines_int8.tflite: copy --tflite
    there to use yours. Exit codes: 0 trained · 2 bad option, data or output path.
    """
    from digitkit.converters.api import check_out
    from digitkit.toolkit.errors import ToolkitError
    from digitkit.toolkit.linetrain import export_lines, train_lines
    from digitkit.toolkit.train import TrainConfig, check_config

    check_config(TrainConfig(out=str(out)))
    check_out(tflite)
    if init is not None and not init.is_file():
        raise ToolkitError(f"--init model {init} not found")
    config = LineTrainConfig(data_dir=data_dir, out=str(out), lines=lines, epochs=epochs, seed=seed,
                             learning_rate=learning_rate, context=context, init=str(init) if init else None,
                             shift=shift)
    result = train_lines(config, on_epoch=lambda epoch, logs: _line(
        f"training lines: epoch {epoch}/{epochs} loss {logs['loss']:.3f} validation lines read "
        f"{logs['val_lines']:.2%}, digits {logs['val_digits']:.2%}, non-digit strips silent {logs['val_silent']:.2%}"))
    exported = export_lines(out, tflite, data_dir, seed=seed)
    _summary("trained the sequence model", [
        ("float model", result.model_path), ("int8 model", exported.out), ("int8 bytes", f"{exported.bytes:,}"),
        ("validation lines read, float / int8", f"{exported.float_lines:.2%} / {exported.int8_lines:.2%}"),
        ("validation digits read, int8", f"{exported.int8_digits:.2%}"),
        ("non-digit strips read as nothing, int8", f"{exported.int8_silence:.2%}"),
        ("training time", f"{result.seconds:.0f} s"),
    ])

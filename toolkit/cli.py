"""The ``digitkit`` command: one typer app, a thin skin over library functions.

Each verb parses options into a config, calls one library function and prints the result. Errors from
any package become one line ``error: ...`` on stderr and the documented exit code:
0 ok · 1 some inputs failed · 2 bad usage or unreadable input · 3 verification gate failed.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

# TensorFlow's C++ log lines (start-up chatter, harmless graph warnings) are noise to a CLI user;
# set before anything imports TF (lazily). Python exceptions still surface; export 0 to see them all.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import typer
from rich.console import Console
from rich.table import Table

from digitkit.converters.errors import ConversionError
from digitkit.runtime.cli import classify as classify_command
from digitkit.runtime.cli_camera import camera as camera_command
from digitkit.runtime.errors import InferenceError
from digitkit.toolkit.cli_convert import convert_command
from digitkit.toolkit.errors import ToolkitError
from digitkit.toolkit.pipeline import PipelineConfig  # no TensorFlow at import: these hold the one copy of the defaults
from digitkit.toolkit.train import TrainConfig

EXIT_CODES_HELP = (
    "Exit codes: 0 ok · 1 some inputs failed · 2 bad usage or unreadable input · 3 verification gate failed."
)

app = typer.Typer(
    name="digitkit",
    help="Train an MNIST CNN, quantize it to int8 TFLite, verify it, and read handwritten digits on edge CPUs.\n\n"
    + EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
_state = {"debug": False}
F = TypeVar("F", bound=Callable[..., Any])
ERRORS = (ToolkitError, ConversionError, InferenceError)
TRAIN_EXTRA_MODULES = {"tensorflow", "keras", "matplotlib"}  # what `pip install "digitkit[train]"` adds


def guarded(fn: F) -> F:
    """Turn the packages' errors (and a few OS ones) into one ``error:`` line and the right exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ERRORS as exc:
            if _state["debug"]:
                traceback.print_exc()
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except ModuleNotFoundError as exc:
            # `pip install .` is the device runtime alone; training, conversion and Keras models need more.
            root = (exc.name or "").split(".")[0]
            if root not in TRAIN_EXTRA_MODULES:
                raise
            if _state["debug"]:
                traceback.print_exc()
            typer.echo(f"error: this needs {root}, which the runtime-only install leaves out; "
                       "install the train extra: pip install 'digitkit[train]'", err=True)
            raise typer.Exit(2) from None
        except OSError as exc:  # a disk full or permission problem the library did not anticipate
            if _state["debug"]:
                traceback.print_exc()
            where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
            typer.echo(f"error:{where} {exc.strerror or exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def command(name: str | None = None, **kwargs: Any) -> Callable[[F], F]:
    """``@command()`` registers a guarded verb on the app (runtime/converters verbs use ``register``)."""

    def deco(fn: F) -> F:
        app.command(name, **kwargs)(guarded(fn))
        return fn

    return deco


def register(fn: Callable[..., Any], name: str | None = None, **kwargs: Any) -> None:
    """Register a verb defined in another package's cli module (it must not import toolkit)."""
    app.command(name, **kwargs)(guarded(fn))


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")] = False,
) -> None:
    _state["debug"] = debug


DataDir = Annotated[
    str | None,
    typer.Option("--data-dir", help="MNIST-format folder (IDX files) or mnist.npz. Default: $DIGITKIT_DATA, "
                 "then ~/.keras/datasets/mnist.npz, then the Keras download."),
]


@command()
def train(
    out: Annotated[
        Path, typer.Option("--out", help="Where to save the model (.keras); a .json sidecar goes beside it.")
    ] = Path(TrainConfig.out),
    arch: Annotated[str, typer.Option("--arch", help="Architecture; see `digitkit models`.")] = TrainConfig.arch,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = TrainConfig.epochs,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = TrainConfig.batch_size,
    seed: Annotated[int, typer.Option("--seed")] = TrainConfig.seed,
    data_dir: DataDir = None,
    no_augment: Annotated[bool, typer.Option("--no-augment", help="Turn off random affine augmentation.")] = False,
) -> None:
    """Train a float CNN on MNIST and save it with a JSON sidecar."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from digitkit.toolkit.train import train as run_train

    config = TrainConfig(out=str(out), arch=arch, epochs=epochs, batch_size=batch_size, seed=seed,
                         data_dir=data_dir, augment=not no_augment)
    with Progress(TextColumn("[bold]training {task.fields[arch]}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[metrics]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console, transient=False) as progress:
        task = progress.add_task("train", total=epochs, arch=arch, metrics="")

        def on_epoch(epoch: int, total: int, logs: dict[str, float]) -> None:
            text = f"loss {logs.get('loss', float('nan')):.4f} acc {logs.get('accuracy', float('nan')):.4f}"
            if "val_accuracy" in logs:
                text += f" val_acc {logs['val_accuracy']:.4f}"
            progress.update(task, completed=epoch, metrics=text)

        result = run_train(config, on_epoch=on_epoch)
    table = Table(title=f"trained {result.arch}")
    table.add_column("")
    table.add_column("value", justify="right")
    for key, value in [
        ("model", result.model_path), ("parameters", f"{result.params:,}"), ("MACs", f"{result.macs:,}"),
        ("train / val / test images", f"{result.train_size} / {result.val_size} / {result.test_size}"),
        ("epochs", str(result.epochs)), ("seed", str(result.seed)),
        ("validation accuracy", f"{result.val_accuracy:.2%}"), ("test accuracy", f"{result.test_accuracy:.2%}"),
        ("training time", f"{result.train_seconds:.0f} s"),
    ]:
        table.add_row(key, value)
    console.print(table)


@command()
def evaluate(
    model: Annotated[Path, typer.Argument(help="A .keras or .tflite model.")],
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
) -> None:
    """Test accuracy, per-class accuracy and confusion matrix of a .keras or .tflite model."""
    from digitkit.toolkit.evaluate import evaluate as run_evaluate

    result = run_evaluate(model, data_dir=data_dir)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), allow_nan=False))  # strict JSON: a NaN here is a bug, not output
        return
    console.print(f"[bold]{result.model_path}[/bold] ({result.format}) on {result.test_size} test images "
                  f"from {result.data_source}: accuracy [bold]{result.accuracy:.2%}[/bold]")
    table = Table(title="confusion matrix (rows: true, columns: predicted)")
    table.add_column("true")
    for c in range(len(result.confusion)):
        table.add_column(str(c), justify="right")
    table.add_column("accuracy", justify="right")
    for c, row in enumerate(result.confusion):
        acc = result.per_class_accuracy[c]
        table.add_row(str(c), *[str(v) for v in row], "-" if acc is None else f"{acc:.2%}")  # "-": no such images
    console.print(table)


@command("models")
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """The registered architectures with their parameter counts and MACs."""
    from digitkit.toolkit.models import ARCHITECTURES, describe

    infos = [describe(name) for name in ARCHITECTURES]
    if as_json:
        for info in infos:
            typer.echo(json.dumps(info.to_dict()))
        return
    table = Table(title="architectures (--arch)")
    for col, justify in (("name", "left"), ("parameters", "right"), ("MACs", "right"), ("description", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for info in infos:
        table.add_row(info.name, f"{info.params:,}", f"{info.macs:,}", info.description)
    console.print(table)


@command()
def bench(
    models: Annotated[list[Path], typer.Argument(
        help="Models to compare (.keras / .tflite); the first is the reference for ratios.")],
    data_dir: DataDir = None,
    threads: Annotated[str, typer.Option("--threads", help="Comma-separated thread counts, e.g. 1,2.")] = "1",
    runs: Annotated[int, typer.Option("--runs", min=1, help="Timed single-image calls per row.")] = 500,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed calls before timing.")] = 50,
    pin_cpu: Annotated[str | None, typer.Option(
        "--pin-cpu", help="Pin inference to these CPUs, e.g. 0 (with --threads 1: a Raspberry-Pi-class run).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Use only the first N test images.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Batch size of the throughput pass.")] = 256,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="Write the results as JSON (schema digitkit.bench/1).")] = None,
    report_dir: Annotated[Path | None, typer.Option(
        "--report", help="Write report.md and PNG plots into this folder.")] = None,
) -> None:
    """Compare models side by side: size, load time, accuracy, latency percentiles, throughput, memory."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from digitkit.toolkit.bench import BenchConfig, parse_int_list
    from digitkit.toolkit.bench import bench as run_bench
    from digitkit.toolkit.report import profile_note, terminal_table

    config = BenchConfig(models=tuple(str(m) for m in models), data_dir=data_dir,
                         threads=parse_int_list(threads, "--threads"), runs=runs, warmup=warmup,
                         pin_cpu=parse_int_list(pin_cpu, "--pin-cpu") if pin_cpu is not None else None,
                         limit=limit, batch_size=batch_size, json_path=str(json_path) if json_path else None,
                         report_dir=str(report_dir) if report_dir else None)
    with Progress(TextColumn("[bold]benchmarking"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("", total=None)
        report = run_bench(config=config, on_result=lambda done, total, row: progress.update(
            task, completed=done, total=total, description=f"{row.label}: p50 {row.latency_ms.p50:.3f} ms"))
    # Piped output would be squeezed to 80 columns; a log file can take the whole table.
    (console if console.is_terminal else Console(width=160)).print(terminal_table(report))
    console.print(profile_note(report))
    if config.json_path:
        console.print(f"JSON: {config.json_path}")
    if config.report_dir:
        console.print(f"report: {Path(config.report_dir) / 'report.md'}")


@command()
def pipeline(
    out: Annotated[Path, typer.Option("--out", help="Folder for every stage's artefacts and report.md.")] = Path(
        PipelineConfig.out),
    data_dir: DataDir = None,
    arch: Annotated[str, typer.Option("--arch", help="Architecture; see `digitkit models`.")] = PipelineConfig.arch,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = PipelineConfig.epochs,
    max_drop: Annotated[float | None, typer.Option(
        "--max-drop", help="Test accuracy the int8 model may lose, in points (default: the converter's).")] = None,
    threads: Annotated[str, typer.Option("--threads", help="Benchmark thread counts, e.g. 1,2.")] = "1",
    runs: Annotated[int, typer.Option("--runs", min=1, help="Benchmark: timed single-image calls per row.")
                    ] = PipelineConfig.runs,
    force: Annotated[bool, typer.Option("--force", help="Run every stage again, even if finished.")] = False,
) -> None:
    """Train -> convert (int8, float32) -> verify -> bench -> classify -> report.md, reusing finished stages."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from digitkit.toolkit.bench import parse_int_list
    from digitkit.toolkit.pipeline import STAGES, StageEvent
    from digitkit.toolkit.pipeline import pipeline as run_pipeline
    from digitkit.toolkit.pipeline_report import bar_rows, headline_rows

    config = PipelineConfig(out=str(out), data_dir=data_dir, arch=arch, epochs=epochs, max_drop=max_drop,
                            threads=parse_int_list(threads, "--threads"), runs=runs, force=force)
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
    table = Table(title=f"digitkit pipeline: {result.out} ({result.seconds:.0f} s)")
    table.add_column("")
    table.add_column("value", justify="right")
    for key, value in headline_rows(result.summary):
        table.add_row(key, value if value != "FAILED" else "[red]FAILED")
    console.print(table)
    bars = Table(title="bars (measured side by side)")
    for col in ("bar", "target", "measured", "met"):
        bars.add_column(col, justify="left" if col == "bar" else "right")
    for row in bar_rows(result.summary):
        bars.add_row(*row)
    console.print(bars)
    reused = [s.name for s in result.stages if s.status == "reused"]
    if reused:
        console.print(f"reused finished stages: {', '.join(reused)} (--force runs them again)")
    console.print(f"report: {result.report_path}")
    if not result.gate_passed:
        typer.echo("error: the int8 model failed the accuracy gate; see the report", err=True)
        raise typer.Exit(3)


# --- verbs defined in other modules: convert (digitkit.toolkit.cli_convert), classify and camera (runtime) ---
register(convert_command, "convert")
register(classify_command, "classify")
register(camera_command, "camera")


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())


if __name__ == "__main__":
    main()

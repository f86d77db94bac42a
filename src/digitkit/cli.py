"""The ``digitkit`` command: one typer app whose verbs are loaded on demand.

A verb's module is imported only when that verb runs (or ``--help`` lists them), so ``digitkit classify``
and ``digitkit camera`` load the runtime alone -- nothing of the toolkit or the converters, no TensorFlow --
and work on a device that installed ``pip install digitkit`` without the train extra.

Errors from every package derive from :class:`digitkit.errors.DigitkitError`; :func:`guarded` turns them into
one ``error: ...`` line on stderr and their exit code (the codes live in :class:`digitkit.errors.ExitCode`).
"""

from __future__ import annotations

import functools
import importlib
import re
import sys
import traceback
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from digitkit.logs import filtered_stderr, quiet_libraries

quiet_libraries()  # before anything can import TensorFlow or LiteRT

import typer  # noqa: E402
from typer.core import TyperCommand, TyperGroup  # noqa: E402
from typer.core import _click as click  # noqa: E402  (typer 0.29 vendors click; only its types are used)

from digitkit.errors import EXIT_CODES_HELP, DigitkitError, ExitCode  # noqa: E402

F = TypeVar("F", bound=Callable[..., Any])

# verb -> the module whose typer ``app`` defines it, in the order ``--help`` lists them. The device verbs live
# in the runtime; everything that needs the training side lives in the toolkit.
VERBS: dict[str, str] = {
    "train": "digitkit.toolkit.cli",
    "convert": "digitkit.toolkit.cli",
    "evaluate": "digitkit.toolkit.cli",
    "bench": "digitkit.toolkit.cli",
    "pipeline": "digitkit.toolkit.cli",
    "models": "digitkit.toolkit.cli",
    "classify": "digitkit.runtime.cli",
    "camera": "digitkit.runtime.cli",
}
TRAIN_EXTRA_MODULES = {"tensorflow", "keras", "matplotlib"}  # what `pip install "digitkit[train]"` adds
_state = {"debug": False}


def _fail(message: str, code: int) -> typer.Exit:
    if _state["debug"]:
        traceback.print_exc()
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def guarded(fn: F) -> F:
    """Turn digitkit's errors (and a few OS ones) into one ``error:`` line and the right exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DigitkitError as exc:
            raise _fail(str(exc), exc.exit_code) from None
        except ModuleNotFoundError as exc:
            # `pip install .` is the device runtime alone; training, conversion and Keras models need more.
            root = (exc.name or "").split(".")[0]
            if root not in TRAIN_EXTRA_MODULES:
                raise
            raise _fail(f"this needs {root}, which the runtime-only install leaves out; install the train "
                        "extra: pip install 'digitkit[train]'", ExitCode.BAD_INPUT) from None
        except OSError as exc:  # a disk full or permission problem the library did not anticipate
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            raise _fail(f"{where}{exc.strerror or exc}", ExitCode.BAD_INPUT) from None

    return wrapper  # type: ignore[return-value]


class Verb(TyperCommand):
    """A verb whose ``--help`` names arguments plainly: ``PATH...`` instead of typer's ``{PATH}...`` in the
    usage line and ``PATH <list[str]>`` in the list (options get plain metavars: FILE, DIR, N)."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_help(ctx, formatter)
        text = "".join(formatter.buffer)
        text = re.sub(r"\{(\w+)\}(\.\.\.)?", r"\1\2", text)
        text = re.sub(r"^( +)([A-Z_]+)(\.\.\.)? <[\w\[\]|, ]+>", lambda m: f"{m[1]}{m[2]}{m[3] or ''}".ljust(len(m[0])),
                      text, flags=re.MULTILINE)
        formatter.buffer[:] = [text]


def verb_app() -> typer.Typer:
    """The typer app a package's cli module registers its verbs on (the root loads them from there)."""
    return typer.Typer(pretty_exceptions_enable=False, add_completion=False, rich_markup_mode=None)


def register(verbs: typer.Typer, fn: Callable[..., Any], name: str | None = None) -> None:
    """Register ``fn`` as a guarded verb (errors become one ``error:`` line and their exit code) on ``verbs``."""
    verbs.command(name, cls=Verb)(guarded(fn))


class LazyVerbs(TyperGroup):
    """The root group: lists :data:`VERBS` and imports a verb's module only when it is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(VERBS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = VERBS.get(cmd_name)
        if module is None:
            return None
        group = typer.main.get_group(importlib.import_module(module).app)
        return group.commands.get(cmd_name)


app = typer.Typer(
    name="digitkit",
    cls=LazyVerbs,
    help="Train an MNIST CNN, quantize it to int8 TFLite, verify it, and read handwritten digits on edge CPUs.\n\n"
    + EXIT_CODES_HELP,
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: clean metavars (FILE, N), and it wraps at any width
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")] = False,
) -> None:
    _state["debug"] = debug


def main() -> None:
    """Console-script entry point (``digitkit`` and ``python -m digitkit``)."""
    code: Any = 0
    with filtered_stderr():
        try:
            app()
        except SystemExit as exc:
            code = exc.code
    sys.exit(code)

"""The ``digitkit`` command: one typer app whose verbs are loaded on demand.

A verb's module is imported only when that verb runs (or ``--help`` lists them), so ``digitkit classify``
and ``digitkit camera`` load the runtime alone -- nothing of the toolkit or the converters, no TensorFlow --
and work on a device that installed ``pip install digitkit`` without the train extra.

Errors from every package derive from :class:`digitkit.errors.DigitkitError`; :func:`digitkit.verbs.guarded`
turns them into one ``error: ...`` line on stderr and their exit code (the codes live in
:class:`digitkit.errors.ExitCode`).
"""

from __future__ import annotations

import functools
import importlib
import sys
from typing import Annotated, Any

from digitkit.logs import filtered_stderr, quiet_libraries

quiet_libraries()  # before anything can import TensorFlow or LiteRT

import typer  # noqa: E402
from typer.core import TyperGroup  # noqa: E402
from typer.core import _click as click  # noqa: E402  (typer 0.29 vendors click; only its types are used)

from digitkit import verbs  # noqa: E402
from digitkit.errors import EXIT_CODES_HELP  # noqa: E402

# verb -> the module whose typer ``app`` defines it, in the order ``--help`` lists them. The device verbs live
# in the runtime; everything that needs the training side lives in the toolkit.
VERBS: dict[str, str] = {
    "train": "digitkit.toolkit.cli",
    "convert": "digitkit.toolkit.cli",
    "evaluate": "digitkit.toolkit.cli",
    "bench": "digitkit.toolkit.cli",
    "pipeline": "digitkit.toolkit.cli",
    "models": "digitkit.toolkit.cli",
    "train-lines": "digitkit.toolkit.cli",
    "combine": "digitkit.toolkit.cli",
    "classify": "digitkit.runtime.cli",
    "camera": "digitkit.runtime.cli",
}


class LazyVerbs(TyperGroup):
    """The root group: lists :data:`VERBS` and imports a verb's module only when it is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(VERBS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = VERBS.get(cmd_name)
        if module is None:
            return None
        return _verbs_of(module).commands.get(cmd_name)


@functools.cache
def _verbs_of(module: str) -> TyperGroup:
    """The click group of ``module``'s typer app, built once per process."""
    return typer.main.get_group(importlib.import_module(module).app)


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
    verbs.state["debug"] = debug


def main() -> None:
    """Console-script entry point (``digitkit`` and ``python -m digitkit``)."""
    code: Any = 0
    with filtered_stderr():
        try:
            app()
        except SystemExit as exc:
            code = exc.code
    sys.exit(code)

"""What a package's cli module needs to define verbs: a typer app for them, ``register`` (a verb wrapped so that
digitkit's errors become one ``error: ...`` line and their exit code), and the ``--debug`` switch they honour.
``digitkit.cli`` (the root command) loads those modules by name; they import this, never the root.
"""

from __future__ import annotations

import functools
import re
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from typer.core import TyperCommand
from typer.core import _click as click  # typer 0.29 vendors click; only its types are used

from digitkit.errors import DigitkitError, ExitCode

F = TypeVar("F", bound=Callable[..., Any])

TRAIN_EXTRA_MODULES = {"tensorflow", "keras", "matplotlib"}  # what `pip install "digitkit[train]"` adds
state = {"debug": False}  # set by the root command's --debug


def _fail(message: str, code: int) -> typer.Exit:
    if state["debug"]:
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

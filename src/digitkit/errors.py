"""The one exception base of digitkit and the exit codes every verb uses, mapped in this one place.

Each package keeps its own subclass (``InferenceError`` in the runtime, ``ConversionError`` in the
converters, ``ToolkitError`` in the toolkit) so a message says where it came from; the CLI catches
:class:`DigitkitError` and exits with its ``exit_code``. This module imports nothing, so the runtime can use it.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What ``digitkit`` exits with (also listed by ``digitkit --help`` and the README)."""

    OK = 0
    SOME_FAILED = 1  # some inputs failed; the batch went on
    BAD_INPUT = 2  # bad usage or unreadable input
    GATE_FAILED = 3  # the verification gate failed


EXIT_CODES_HELP = ("Exit codes: 0 ok · 1 some inputs failed · 2 bad usage or unreadable input · "
                   "3 verification gate failed.")


class DigitkitError(Exception):
    """A user-facing failure. The message is one line: what failed, the offending value, how to fix it.

    Args:
        message: the one-line message (the CLI prints ``error: <message>``).
        exit_code: overrides the class's :class:`ExitCode` (default: bad input).
    """

    exit_code: ExitCode = ExitCode.BAD_INPUT

    def __init__(self, message: str, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = ExitCode(exit_code)

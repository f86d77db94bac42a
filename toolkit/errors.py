"""The one exception base of the toolkit package, and the exit codes every verb uses."""

from __future__ import annotations

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_GATE_FAILED = 3


class ToolkitError(Exception):
    """A user-facing failure in training, data loading, evaluation or benchmarking.

    The message is one line: what failed, the offending value, and how to fix it.
    ``exit_code`` is what the CLI exits with (2: bad usage or unreadable input).
    """

    exit_code: int = EXIT_BAD_INPUT

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class DataError(ToolkitError):
    """The dataset could not be found, read or validated."""

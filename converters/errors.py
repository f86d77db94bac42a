"""The converters' exceptions; the base and exit codes are in digitkit.errors."""

from __future__ import annotations

from typing import Any

from digitkit.errors import DigitkitError, ExitCode


class ConversionError(DigitkitError):
    """A conversion or verification failure (exit 2: bad input)."""


class GateFailed(ConversionError):
    """The converted model lost more accuracy than ``--max-drop`` allows; ``report`` holds the figures."""

    exit_code = ExitCode.GATE_FAILED

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report

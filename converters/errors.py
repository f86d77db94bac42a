"""The one exception base of the converters package."""

from __future__ import annotations

from typing import Any


class ConversionError(Exception):
    """A conversion or verification failure. ``exit_code`` 2 = bad input, 3 = gate failed."""

    exit_code: int = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class GateFailed(ConversionError):
    """The converted model lost more accuracy than ``--max-drop`` allows; ``report`` holds the figures."""

    exit_code = 3

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report

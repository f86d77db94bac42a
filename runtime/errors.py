"""The one exception base of the runtime package (never shadow the builtin RuntimeError)."""

from __future__ import annotations


class InferenceError(Exception):
    """A user-facing failure loading a model or reading an image. ``exit_code`` 2 = bad input."""

    exit_code: int = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

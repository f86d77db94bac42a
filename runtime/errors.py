"""The runtime's exception (never shadow the builtin RuntimeError); the base and exit codes are in digitkit.errors."""

from __future__ import annotations

from digitkit.errors import DigitkitError


class InferenceError(DigitkitError):
    """A user-facing failure loading a model or reading an image (exit 2: bad input)."""

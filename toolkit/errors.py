"""The toolkit's exceptions; the base and exit codes are in digitkit.errors."""

from __future__ import annotations

from digitkit.errors import DigitkitError


class ToolkitError(DigitkitError):
    """A user-facing failure in training, data loading, evaluation or benchmarking (exit 2 unless given)."""


class DataError(ToolkitError):
    """The dataset could not be found, read or validated."""

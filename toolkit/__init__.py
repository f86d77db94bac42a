"""digitkit's training side: data, models, training, evaluation, benchmarks, the pipeline and their CLI verbs.

``digitkit.toolkit.train(...)``, ``.evaluate(...)`` and ``.convert(...)`` are the Python twins of the verbs:
each is its submodule, made callable (see :mod:`digitkit.toolkit.twins` for why). TensorFlow is imported lazily
inside the functions that need it, so importing this package is cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from digitkit.toolkit.errors import DataError, ToolkitError

_TWINS = ("train", "evaluate", "convert")


def __getattr__(name: str) -> Any:
    if name in _TWINS:  # first use: importing the submodule also binds it here, so this runs once per name
        return importlib.import_module(f"digitkit.toolkit.{name}")
    raise AttributeError(f"module 'digitkit.toolkit' has no attribute {name!r}")


__all__ = ["DataError", "ToolkitError", "convert", "evaluate", "train"]

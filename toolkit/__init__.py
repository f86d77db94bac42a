"""digitkit's training side: data, models, training, evaluation, benchmarks and the CLI.

TensorFlow is imported lazily inside the functions that need it, so importing this package is cheap.
"""

from digitkit.toolkit.errors import DataError, ToolkitError


def train(*args, **kwargs):  # type: ignore[no-untyped-def]
    """Python twin of ``digitkit train``: see :func:`digitkit.toolkit.train.train`."""
    from digitkit.toolkit.train import train as _train

    return _train(*args, **kwargs)


def evaluate(*args, **kwargs):  # type: ignore[no-untyped-def]
    """Python twin of ``digitkit evaluate``: see :func:`digitkit.toolkit.evaluate.evaluate`."""
    from digitkit.toolkit.evaluate import evaluate as _evaluate

    return _evaluate(*args, **kwargs)


def convert(*args, **kwargs):  # type: ignore[no-untyped-def]
    """Python twin of ``digitkit convert``: see :func:`digitkit.toolkit.convert.convert`."""
    from digitkit.toolkit.convert import convert as _convert

    return _convert(*args, **kwargs)


__all__ = ["DataError", "ToolkitError", "convert", "evaluate", "train"]

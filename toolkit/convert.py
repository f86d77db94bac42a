"""The Python twin of ``digitkit convert``: find the data, hold out the same validation split as training,
and hand the arrays to :func:`digitkit.converters.convert` (the converters never read datasets themselves).
"""

from __future__ import annotations

import os
from typing import Any

from digitkit.converters.api import check_out, make_config
from digitkit.converters.api import convert as convert_model
from digitkit.converters.data import ConversionData, prepare
from digitkit.converters.report import ConversionReport
from digitkit.converters.tflite import ConvertConfig
from digitkit.toolkit.data import MnistData, load_mnist, split_validation
from digitkit.toolkit.twins import make_callable


def conversion_data(data: MnistData, samples: int, seed: int = 0, val_fraction: float = 0.1) -> ConversionData:
    """Calibration images from the training split (``digitkit train``'s validation split held out, seed 0)
    and the test set, as the converter needs them."""
    split = split_validation(data.x_train, data.y_train, val_fraction, seed=0)
    return prepare(split.x_train, split.y_train, split.x_val, split.y_val, data.x_test, data.y_test,
                   samples=samples, seed=seed, source=data.source, sha256=data.sha256)


def convert(model: str | os.PathLike[str], out: str | os.PathLike[str], config: ConvertConfig | None = None,
            *, data: MnistData | None = None, **overrides: Any) -> ConversionReport:
    """Python twin of ``digitkit convert``: convert, verify on the test set, gate, write ``out`` + its .json.

    Args:
        model: the float .keras model ((28, 28, 1) in, 10 probabilities out).
        out: the .tflite to write (runtime metadata embedded); its record ``m.tflite.json`` goes beside it.
        config: the settings (``ConvertConfig()`` if None); keyword ``overrides`` replace fields.
        data: an already loaded dataset; else it is found from ``config.data_dir`` like ``digitkit train``.

    Raises:
        ConversionError: bad settings or input (exit 2). GateFailed: the drop exceeds ``max_drop`` (exit 3).
        ToolkitError: the data could not be found or read (exit 2).
    """
    config = make_config(config, overrides)
    check_out(out)  # before the data is read: a bad --out fails at once
    if data is None:
        data = load_mnist(config.data_dir)
    cdata = conversion_data(data, config.calibration_samples, config.calibration_seed, config.val_fraction)
    return convert_model(model, out, config, data=cdata)


make_callable(__name__)  # digitkit.toolkit.convert(...) calls convert() (see digitkit.toolkit.twins)

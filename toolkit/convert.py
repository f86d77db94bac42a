"""The Python twin of ``digitkit convert``: find the data, hold out the same validation split as training,
and hand the arrays to :func:`digitkit.converters.convert` (the converters never read datasets themselves).
"""

from __future__ import annotations

import os
from typing import Any

from digitkit.converters.api import check_out, make_config
from digitkit.converters.api import convert as convert_model
from digitkit.converters.data import ConversionData, prepare
from digitkit.converters.report import ConversionReport, training_record
from digitkit.converters.tflite import ConvertConfig
from digitkit.toolkit.data import MnistData, load_mnist, split_validation
from digitkit.toolkit.train import training_negatives
from digitkit.toolkit.twins import make_callable


def training_settings(model: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings ``digitkit train`` recorded beside a model (its record's "config"), or {} if none."""
    record = training_record(model) or {}
    config = record.get("config")
    return config if isinstance(config, dict) else {}


def conversion_data(data: MnistData, samples: int, seed: int = 0, val_fraction: float = 0.1,
                    record: dict[str, Any] | None = None) -> ConversionData:
    """Calibration images from the training split and the test set, as the converter needs them.

    The validation split held out is the one training recorded (its seed and fraction, from ``record``; seed 0
    and ``val_fraction`` for a model without a record), and so are the non-digit tiles of a model trained with
    a "not a digit" class.
    """
    record = record or {}
    split_seed = int(record.get("seed", 0))
    val_fraction = float(record.get("val_fraction", val_fraction))
    split = split_validation(data.x_train, data.y_train, val_fraction, seed=split_seed)
    negatives = val_negatives = None
    if record.get("not_a_digit", True):
        neg_train, neg_val = training_negatives(split.x_train, split.x_val, split_seed)
        negatives, val_negatives = neg_train.x, neg_val.x
    return prepare(split.x_train, split.y_train, split.x_val, split.y_val, data.x_test, data.y_test,
                   samples=samples, seed=seed, source=data.source, sha256=data.sha256, negatives=negatives,
                   val_negatives=val_negatives, split_seed=split_seed)


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
    cdata = conversion_data(data, config.calibration_samples, config.calibration_seed, config.val_fraction,
                            record=training_settings(model))
    return convert_model(model, out, config, data=cdata)


make_callable(__name__)  # digitkit.toolkit.convert(...) calls convert() (see digitkit.toolkit.twins)

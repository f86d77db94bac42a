"""digitkit's light runtime: a TFLite interpreter, OpenCV and numpy -- never TensorFlow.

    from runtime import DigitClassifier
    DigitClassifier(model_path=None).classify("photo.jpg").text
"""

from __future__ import annotations

from typing import Any

from runtime.errors import InferenceError
from runtime.interpreter import ModelMetadata, TFLiteModel

# The classifier pulls in OpenCV; load it on first use so `digitkit --help` and `runtime.errors` stay cheap.
_LAZY = {"DigitClassifier": "runtime.classifier", "ClassifyConfig": "runtime.classifier",
         "Reading": "runtime.classifier", "Digit": "runtime.classifier", "ReadError": "runtime.classifier",
         "classify": "runtime.classifier"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")


__all__ = ["ClassifyConfig", "Digit", "DigitClassifier", "InferenceError", "ModelMetadata", "ReadError",
           "Reading", "TFLiteModel", "classify"]

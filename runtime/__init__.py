"""digitkit's light runtime: a TFLite interpreter, OpenCV and numpy -- never TensorFlow.

    from digitkit.runtime import DigitClassifier
    DigitClassifier(model_path=None).classify("photo.jpg").text
"""

from __future__ import annotations

from typing import Any

from digitkit.runtime.errors import InferenceError
from digitkit.runtime.interpreter import ModelMetadata, TFLiteModel

# The classifier pulls in OpenCV; load it on first use so `digitkit --help` and `digitkit.runtime.errors` stay cheap.
_LAZY = dict.fromkeys(("DigitClassifier", "ClassifyConfig", "Reading", "Digit", "ReadError", "classify"),
                      "digitkit.runtime.classifier")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'digitkit.runtime' has no attribute {name!r}")


__all__ = ["ClassifyConfig", "Digit", "DigitClassifier", "InferenceError", "ModelMetadata", "ReadError",
           "Reading", "TFLiteModel", "classify"]

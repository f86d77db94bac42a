"""Post-training quantization of Keras models to TFLite, with an accuracy gate.

``convert`` is the Python twin of ``digitkit convert``. TensorFlow is imported lazily, inside the
functions that convert, so importing this package is cheap.
"""

from digitkit.converters.api import convert
from digitkit.converters.errors import ConversionError, GateFailed
from digitkit.converters.report import ConversionReport
from digitkit.converters.tflite import IO_TYPES, MODES, ConvertConfig

__all__ = ["IO_TYPES", "MODES", "ConversionError", "ConversionReport", "ConvertConfig", "GateFailed", "convert"]

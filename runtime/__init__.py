"""digitkit's light runtime: a TFLite interpreter, OpenCV and numpy -- never TensorFlow."""

from runtime.errors import InferenceError
from runtime.interpreter import ModelMetadata, TFLiteModel

__all__ = ["InferenceError", "ModelMetadata", "TFLiteModel"]

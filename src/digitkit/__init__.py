"""digitkit: train an MNIST CNN, quantize it to int8 TFLite, verify it, and read handwritten digits on edge CPUs.

One import name, three subpackages (each a top-level folder of the repository, mapped here by setuptools):

- ``digitkit.runtime``    -- what goes on the device: LiteRT + OpenCV + numpy, never TensorFlow
- ``digitkit.converters`` -- int8 post-training quantization and the accuracy gate (TensorFlow)
- ``digitkit.toolkit``    -- data, models, training, evaluation, benchmarks, the pipeline and the CLI

Importing ``digitkit`` imports nothing else; ``from digitkit.runtime import DigitClassifier`` loads the runtime only.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("digitkit")
except PackageNotFoundError:  # pragma: no cover - running from a tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]

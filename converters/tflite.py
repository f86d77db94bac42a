"""Keras -> TFLite: the conversion settings and the TensorFlow converter calls (TensorFlow imported lazily)."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from digitkit.converters.errors import ConversionError

MODES = ("int8", "dynamic", "float16", "float32")
IO_TYPES = ("uint8", "int8", "float32")
INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


@dataclass(frozen=True)
class ConvertConfig:
    """Every setting of a conversion; the CLI's defaults are read from here.

    ``io`` None means: ``uint8`` for int8 (raw 0-255 pixels in, so the device does no float work before the
    model), ``float32`` for the other modes, which keep float interfaces.
    """

    mode: str = "int8"
    io: str | None = None
    calibration_samples: int = 500
    calibration_seed: int = 0
    val_fraction: float = 0.1  # the training split excludes the same validation split as `digitkit train`
    max_drop: float = 0.3  # percentage points of test accuracy the converted model may lose
    data_dir: str | None = None
    debug_layers: bool = False
    keep_rejected: bool = False
    threads: int | None = None  # interpreter threads for the verification pass
    # A model with a "not a digit" output: its rejection threshold is the lowest that keeps this share of the
    # validation digits (chosen on the converted model; see converters/verify.py).
    keep_digits: float = 0.999

    @property
    def resolved_io(self) -> str:
        if self.io is not None:
            return self.io
        return "uint8" if self.mode == "int8" else "float32"

    def validate(self) -> None:
        """Raises ConversionError (exit 2) for a setting no conversion can use."""
        if self.mode not in MODES:
            raise ConversionError(f"--mode {self.mode!r} is not one of: {', '.join(MODES)}")
        if self.resolved_io not in IO_TYPES:
            raise ConversionError(f"--io {self.io!r} is not one of: {', '.join(IO_TYPES)}")
        if self.mode != "int8" and self.resolved_io != "float32":
            raise ConversionError(f"--io {self.io} needs --mode int8; {self.mode} models keep float32 input "
                                  "and output (drop --io or pass --io float32)")
        if self.calibration_samples < 1:
            raise ConversionError(f"--calibration-samples {self.calibration_samples} must be at least 1 "
                                  "(int8 needs images to calibrate activation ranges; 500 is the default)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConversionError(f"validation fraction {self.val_fraction} must be in [0, 1)")
        if self.debug_layers and self.mode != "int8":
            raise ConversionError(f"--debug-layers reports int8 quantization error; it needs --mode int8, "
                                  f"not {self.mode}")
        if self.threads is not None and self.threads < 1:
            raise ConversionError(f"threads {self.threads} must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "io": self.resolved_io}


@contextlib.contextmanager
def quiet_tf() -> Iterator[None]:
    """Silence what TensorFlow's converter prints on fds 1 and 2 ("Saved artifact at ...", MLIR notes).

    Python exceptions still propagate; the captured text is dropped. Set DIGITKIT_TF_VERBOSE=1 to see it.
    """
    if os.environ.get("DIGITKIT_TF_VERBOSE"):
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink, open(os.devnull, "w") as devnull:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            # A test runner's sys.stdout/stderr are not fds 1 and 2; Python warnings go to sys.stderr.
            with contextlib.redirect_stdout(devnull), contextlib.redirect_stderr(devnull), \
                    warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        finally:
            sys.stdout.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def load_keras(path: str | os.PathLike[str]) -> Any:
    """Load a .keras model and check it is a digit model: (28, 28, 1) in, 10 classes (or 10 + "not a digit") out.

    Raises:
        ConversionError: missing file, not a Keras model, or the wrong input/output shape.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"model file {path} not found; pass a .keras model from `digitkit train`")
    with quiet_tf():  # TensorFlow's import prints C++ start-up lines no TF_CPP_MIN_LOG_LEVEL hides
        import keras

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # ValueError, OSError, zipfile errors...: all mean "not a model"
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise ConversionError(f"{path}: not a readable Keras model ({first})") from None
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ConversionError(f"{path}: model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
                              "expected one image in and one probability vector out")
    in_shape = tuple(model.inputs[0].shape[1:])
    out_shape = tuple(model.outputs[0].shape[1:])
    if in_shape != INPUT_SHAPE:
        raise ConversionError(f"{path}: model input is {in_shape}, expected {INPUT_SHAPE} "
                              "(28x28 grayscale digits); it is not an MNIST digit model")
    if out_shape not in ((NUM_CLASSES,), (NUM_CLASSES + 1,)):
        raise ConversionError(f"{path}: model output is {out_shape}, expected ({NUM_CLASSES},) class probabilities "
                              f"(or ({NUM_CLASSES + 1},) with 'not a digit')")
    return model


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W) -> float32 (N, H, W, 1) in [0, 1], the Keras models' input (28 x 28 for the
    digit models; the sequence model's strips are 28 x 128)."""
    x = np.asarray(images, dtype=np.float32) / 255.0
    return x.reshape(-1, *(x.shape[1:3] if x.ndim >= 3 else INPUT_SHAPE[:2]), 1)


def space_to_depth_kernel(kernel: np.ndarray, block: int = 2) -> np.ndarray:
    """The kernel of a stride-1 'same' conv (k, k, C, F), k odd, re-expressed on ``space_to_depth(x, block)``.

    Returns a (t, t, block²·C, block²·F) kernel, t = 2·ceil((k - 1) / 2 / block) + 1 ('same' again): output
    channel (a·block + b)·F + f is filter f at sub-position (a, b) of each block, the order
    ``depth_to_space`` undoes; input channels follow ``space_to_depth``'s order. Each output channel holds
    one filter's taps plus zeros, so per-channel int8 weight scales, and the int8 results, are unchanged.
    """
    k, _, c, f = kernel.shape
    pad = (k - 1) // 2
    reach = (k - 1 - pad + block - 1) // block
    taps = 2 * reach + 1
    out = np.zeros((taps, taps, block * block * c, block * block * f), kernel.dtype)
    for u in range(taps):
        for v in range(taps):
            for r in range(block):
                for s in range(block):
                    for a in range(block):
                        for b in range(block):
                            dy = block * (u - reach) + r - a + pad
                            dx = block * (v - reach) + s - b + pad
                            if 0 <= dy < k and 0 <= dx < k:
                                rows = slice((r * block + s) * c, (r * block + s + 1) * c)
                                cols = slice((a * block + b) * f, (a * block + b + 1) * f)
                                out[u, v, rows, cols] = kernel[dy, dx]
    return out


def _space_to_depth_eligible(layer: Any, keras: Any) -> bool:
    """A plain stride-1 'same' k x k (k odd >= 3) Conv2D on a one-channel, even-sized, channels-last input."""
    if type(layer) is not keras.layers.Conv2D:  # not DepthwiseConv2D, Conv2DTranspose or a subclass
        return False
    shape = tuple(layer.input.shape)
    k = layer.kernel_size
    return (len(shape) == 4 and shape[-1] == 1 and all(isinstance(d, int) and d % 2 == 0 for d in shape[1:3])
            and layer.data_format == "channels_last" and layer.padding == "same" and layer.groups == 1
            and tuple(layer.strides) == (1, 1) and tuple(layer.dilation_rate) == (1, 1)
            and k[0] == k[1] and k[0] % 2 == 1 and k[0] >= 3)


def fold_batch_norm(kernel: np.ndarray, bias: np.ndarray | None, bn: Any) -> tuple[np.ndarray, np.ndarray]:
    """The kernel and bias of a conv (k, k, C, F) that computes ``bn(conv(x))`` at inference in one conv:
    every output channel scaled by gamma / sqrt(moving variance + epsilon), the shift moved into the bias."""
    features = kernel.shape[-1]

    def value(weight: Any, default: float) -> np.ndarray:
        return np.asarray(weight, np.float64) if weight is not None else np.full(features, default)

    scale = value(bn.gamma, 1.0) / np.sqrt(np.asarray(bn.moving_variance, np.float64) + bn.epsilon)
    shift = value(bn.beta, 0.0) - np.asarray(bn.moving_mean, np.float64) * scale
    bias = np.zeros(features) if bias is None else np.asarray(bias, np.float64)
    return (kernel * scale).astype(kernel.dtype), (bias * scale + shift).astype(kernel.dtype)


def int8_graph(model: Any) -> Any:
    """The model re-expressed for a fast int8 .tflite, computing the same function with the same weights.

    Why: XNNPACK (LiteRT's default CPU delegate) runs an int8 convolution with ONE input channel very
    slowly: it pays per output pixel and kernel tap whatever the channel count, so the seed's 5x5x1x16
    first conv took ~66 us in int8 vs ~9 us in float32 (x86, AVX-512, 1 thread), which made the whole
    int8 model no faster than float32. Two rewrites, on a clone (``model`` is untouched):

    - such a conv (see :func:`_space_to_depth_eligible`) becomes SPACE_TO_DEPTH(2) -> 3x3 conv on 4
      channels with the rearranged kernel (:func:`space_to_depth_kernel`) -> DEPTH_TO_SPACE(2): 9 taps
      on 14x14 instead of 25 on 28x28, ~9 us in int8. A BatchNormalization right after such a conv is folded
      into its kernel and bias first (:func:`fold_batch_norm`), as the converter would have done.
    - Flatten becomes a reshape to (-1, features): Keras's Flatten keeps the batch dimension dynamic,
      which the converter emits as SHAPE/STRIDED_SLICE/PACK ops that split the XNNPACK partition.

    Sequential (non-functional) models are returned as they are.
    """
    with quiet_tf():
        import keras
        import tensorflow as tf

    if type(model) is keras.Sequential or not hasattr(model, "inputs"):
        return model
    bn_after = {id(layer.input): layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)}
    folded: set[int] = set()  # BatchNormalization layers already folded into the conv before them

    def call(layer: Any, *args: Any, **kwargs: Any) -> Any:
        x = args[0] if args else None
        if isinstance(layer, keras.layers.Flatten) and not kwargs and len(args) == 1:
            features = layer.compute_output_shape(x.shape)[-1]
            if isinstance(features, int):
                return keras.ops.reshape(x, (-1, features))
        if isinstance(layer, keras.layers.BatchNormalization) and id(layer) in folded:
            return x
        bn = bn_after.get(id(layer.output))
        linear = getattr(layer, "activation", None) is keras.activations.linear
        if _space_to_depth_eligible(layer, keras) and (bn is None or linear) and len(args) == 1:
            weights = layer.get_weights()
            kernel, bias = weights[0], (weights[1] if layer.use_bias else None)
            if bn is not None:
                kernel, bias = fold_batch_norm(kernel, bias, bn)
                folded.add(id(bn))
            kernel = space_to_depth_kernel(kernel)
            conv = keras.layers.Conv2D(kernel.shape[-1], kernel.shape[0], padding="same",
                                       activation=layer.activation, use_bias=bias is not None,
                                       name=f"{layer.name}_s2d")
            y = keras.layers.Lambda(lambda t: tf.nn.space_to_depth(t, 2), name=f"{layer.name}_s2d_in")(x)
            y = conv(y)
            conv.set_weights([kernel] + ([np.tile(bias, 4)] if bias is not None else []))
            return keras.layers.Lambda(lambda t: tf.nn.depth_to_space(t, 2), name=f"{layer.name}_s2d_out")(y)
        return layer(*args, **kwargs)

    return keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)


def _converter(model: Any, mode: str, io: str, calibration: np.ndarray | None, rewrite: bool = True) -> Any:
    import tensorflow as tf

    if mode == "int8" and rewrite:
        model = int8_graph(model)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == "float32":
        return conv
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        conv.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        if calibration is None or len(calibration) == 0:
            raise ConversionError("the calibration set is empty; int8 needs training images to calibrate "
                                  "activation ranges (check --data-dir and --calibration-samples)")
        x = to_float(calibration)
        conv.representative_dataset = lambda: ([x[i:i + 1]] for i in range(len(x)))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]  # fail rather than fall back
        conv.inference_input_type = {"uint8": tf.uint8, "int8": tf.int8, "float32": tf.float32}[io]
        conv.inference_output_type = conv.inference_input_type
    # "dynamic": Optimize.DEFAULT without a representative dataset = int8 weights, float activations.
    return conv


def convert_keras(model: Any, mode: str, io: str = "float32", calibration: np.ndarray | None = None) -> bytes:
    """Convert a loaded Keras model to TFLite flatbuffer bytes.

    Args:
        model: from :func:`load_keras`.
        mode: one of MODES; int8 quantizes weights (per channel) and activations with ``calibration``,
            converting :func:`int8_graph`'s rewrite of ``model`` (same function, faster on XNNPACK).
        io: the input/output tensor type (int8 mode only; the others keep float32).
        calibration: uint8 images (N, 28, 28) from the training split, int8 mode only.

    Raises:
        ConversionError: empty calibration set, or TensorFlow's converter refused the model.
    """
    conv = _converter(model, mode, io, calibration)
    try:
        with quiet_tf():
            return bytes(conv.convert())
    except ConversionError:
        raise
    except Exception as exc:  # the converter raises ConverterError, ValueError, RuntimeError...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ConversionError(f"TensorFlow's converter failed in {mode} mode: {first}") from None


def layer_debugger(model: Any, calibration: np.ndarray, debug_images: np.ndarray) -> Any:
    """Run TensorFlow's QuantizationDebugger (float io, as it requires) and return it after ``run()``."""
    import tensorflow as tf

    # The Keras graph as written (no int8_graph rewrite): the report names the user's layers, and the
    # rewrite computes the same thing with the same weights and scales.
    conv = _converter(model, "int8", "float32", calibration, rewrite=False)
    x = to_float(debug_images)
    with quiet_tf():  # the debugger converts in its constructor
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=conv, debug_dataset=lambda: ([x[i:i + 1]] for i in range(len(x))))
        debugger.run()
    return debugger

"""Load a .tflite model in LiteRT (``ai_edge_litert``) or ``tflite_runtime`` -- never TensorFlow -- and run
batches through it, quantizing inputs and dequantizing outputs from the tensors' own (scale, zero_point).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from digitkit.runtime.errors import InferenceError
from digitkit.runtime.modelcheck import check_model, output_is_softmax

BACKENDS = ("litert", "tflite-runtime")
_MODULES = {"litert": "ai_edge_litert.interpreter", "tflite-runtime": "tflite_runtime.interpreter"}


@dataclass(frozen=True)
class ModelMetadata:
    """What the runtime needs to feed a model without guessing; read from the ``MODEL.json`` sidecar's
    ``"runtime"`` object when present, else the MNIST conventions below."""

    labels: tuple[str, ...] = tuple(str(i) for i in range(10))
    input_size: tuple[int, int] = (28, 28)
    polarity: str = "white-on-black"  # MNIST: light digit on a dark background
    normalisation: str = "x/255"  # float models take pixels / 255 in [0, 1]
    output: str = "softmax"  # the last op already gives probabilities
    # The model's own "not a digit" answer: the index of that output (None: a digits-only model) and the
    # probability at which a candidate is rejected, chosen by the converter on validation data.
    not_a_digit: int | None = None
    reject_threshold: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": list(self.labels),
            "input_size": list(self.input_size),
            "polarity": self.polarity,
            "normalisation": self.normalisation,
            "output": self.output,
            "not_a_digit": self.not_a_digit,
            "reject_threshold": self.reject_threshold,
        }

    @property
    def digit_indices(self) -> list[int]:
        """The outputs that are digits (every output but "not a digit")."""
        return [i for i in range(len(self.labels)) if i != self.not_a_digit]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMetadata:
        base = cls()
        return cls(
            labels=tuple(str(x) for x in data.get("labels", base.labels)),
            input_size=tuple(int(x) for x in data.get("input_size", base.input_size)),  # type: ignore[arg-type]
            polarity=str(data.get("polarity", base.polarity)),
            normalisation=str(data.get("normalisation", base.normalisation)),
            output=str(data.get("output", base.output)),
            not_a_digit=None if data.get("not_a_digit") is None else int(data["not_a_digit"]),
            reject_threshold=None if data.get("reject_threshold") is None else float(data["reject_threshold"]),
        )


# What a model with an 11th output means when nothing describes it: digitkit's "not a digit" class, rejected
# when it is the likelier answer (a converted model carries the threshold its converter measured).
NOT_A_DIGIT_CONVENTION: dict[str, Any] = {"labels": (*(str(i) for i in range(10)), "not a digit"),
                                          "not_a_digit": 10, "reject_threshold": 0.5}


def sidecar_path(model_path: str | os.PathLike[str]) -> Path:
    """``model.tflite`` -> ``model.json``: the report and runtime metadata written by the converter."""
    return Path(model_path).with_suffix(".json")


def read_metadata(model_path: str | os.PathLike[str]) -> ModelMetadata:
    """The runtime metadata stored beside the model, or the MNIST defaults if there is no sidecar."""
    side = sidecar_path(model_path)
    if not side.is_file():
        return ModelMetadata()
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InferenceError(f"{side}: unreadable model sidecar ({exc}); fix or delete it") from None
    runtime = data.get("runtime") if isinstance(data, dict) else None
    return ModelMetadata.from_dict(runtime) if isinstance(runtime, dict) else ModelMetadata()


def load_interpreter_class(backend: str | None = None) -> tuple[str, Any]:
    """Return ``(backend_name, Interpreter class)``: ai_edge_litert first, then tflite_runtime.

    Raises:
        InferenceError: the requested backend (or any backend) is not installed.
    """
    if backend is not None and backend not in BACKENDS:
        raise InferenceError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    for name in [backend] if backend else list(BACKENDS):
        try:
            module = importlib.import_module(_MODULES[name])
        except ImportError:
            continue
        return name, module.Interpreter
    wanted = backend or " or ".join(BACKENDS)
    raise InferenceError(
        f"no TFLite interpreter ({wanted}) is installed; run: pip install ai-edge-litert "
        "(or tflite-runtime on older Raspberry Pi OS)"
    )


_INPUT_TYPES = (np.float32, np.uint8, np.int8)
_OUTPUT_TYPES = (np.float32, np.uint8, np.int8, np.int16)


def read_model(path: Path) -> bytes:
    """The model file's bytes, read once: what is checked is what gets loaded."""
    if not path.is_file():
        raise InferenceError(f"model file {path} not found; pass --model FILE.tflite")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InferenceError(f"{path}: cannot read the model ({exc.strerror or exc})") from None
    if not data:
        raise InferenceError(f"{path}: the model file is empty")
    return data


def open_interpreter(path: str | os.PathLike[str], backend: str | None = None,
                     threads: int | None = None) -> tuple[str, Any, bytes]:
    """Load a .tflite into an allocated interpreter, but only once it is known not to crash this process
    (see :mod:`digitkit.runtime.modelcheck`).

    Returns:
        (backend name, interpreter, the model's bytes).

    Raises:
        InferenceError: missing, unreadable or malformed file, or no interpreter installed.
    """
    path = Path(path)
    data = read_model(path)
    name, interpreter_cls = load_interpreter_class(backend)
    check_model(data, _MODULES[name], path)
    try:
        interp = interpreter_cls(model_content=data, num_threads=threads)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise InferenceError(f"{path}: not a loadable TFLite model ({_first_line(exc)})") from None
    return name, interp, data


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


class TFLiteModel:
    """One loaded .tflite model. ``predict_proba`` takes images in MNIST polarity and gives probabilities.

    Args:
        model_path: the .tflite file.
        backend: "litert" or "tflite-runtime"; None picks the first installed.
        threads: interpreter threads (None = the backend's default).
        metadata: what the model's outputs mean, when the caller knows better than the file (the converter
            verifying a model it has not yet labelled); None reads it from the model's own metadata.
    """

    def __init__(self, model_path: str | os.PathLike[str], backend: str | None = None,
                 threads: int | None = None, metadata: ModelMetadata | None = None) -> None:
        self.path = Path(model_path)
        self.backend, self._interp, data = open_interpreter(self.path, backend, threads)
        self.threads = threads
        self.metadata = metadata or read_metadata(self.path)
        if metadata is None and not sidecar_path(self.path).is_file() and not output_is_softmax(data):
            # No sidecar to say what the output is, and no SOFTMAX makes it: logits, so normalise them.
            self.metadata = dataclasses.replace(self.metadata, output="logits")
        inputs, outputs = self._interp.get_input_details(), self._interp.get_output_details()
        if len(inputs) != 1 or not outputs:
            raise InferenceError(f"{self.path}: the model has {len(inputs)} inputs and {len(outputs)} outputs; "
                                 "a digit model has one image input and a class output")
        self._in, self._out = inputs[0], outputs[0]
        shape = tuple(int(s) for s in self._in["shape"])
        if len(shape) != 4 or shape[1:] != (*self.metadata.input_size, 1):
            raise InferenceError(f"{self.path}: input shape {shape} is not (N, 28, 28, 1); not a digit model")
        out_shape = tuple(int(s) for s in self._out["shape"])
        described = metadata is not None or sidecar_path(self.path).is_file()
        if not described and out_shape and out_shape[-1] == len(self.metadata.labels) + 1:
            # Undescribed, with one output more than the digits: digitkit's convention for "not a digit".
            self.metadata = dataclasses.replace(self.metadata, **NOT_A_DIGIT_CONVENTION)
        if not out_shape or out_shape[-1] != len(self.metadata.labels):
            raise InferenceError(f"{self.path}: output shape {out_shape} does not give "
                                 f"{len(self.metadata.labels)} classes")
        for what, details, allowed in (("input", self._in, _INPUT_TYPES), ("output", self._out, _OUTPUT_TYPES)):
            dtype = np.dtype(details["dtype"])
            if dtype not in allowed:
                raise InferenceError(f"{self.path}: {what} type {dtype} is not supported; "
                                     f"expected one of {', '.join(str(np.dtype(t)) for t in allowed)}")
            scale = details.get("quantization", (0.0, 0))[0]
            if dtype.kind in "iu" and not (np.isfinite(scale) and scale > 0):
                raise InferenceError(f"{self.path}: integer {what} tensor without a usable quantization "
                                     f"scale ({scale}); re-convert the model")
        self._batch = shape[0]
        self._cache_details()

    def _cache_details(self) -> None:
        """Work out once per allocation what every call needs: tensor indices, whether raw pixels pass
        straight in, and the output's dequantization table. A one-image call is ~30 us of model here, so
        re-deriving these per call (dtype objects, dict look-ups) would be a visible share of it."""
        self._in_index = self._in["index"]
        self._out_index = self._out["index"]
        self._pass_through = self._passes_pixels_through()
        out_dtype = self.output_dtype
        self._lut: np.ndarray | None = None
        if out_dtype in (np.uint8, np.int8):
            # lut[byte] = (q - zero) * scale for the code q whose byte pattern that is, in float32 arithmetic.
            scale, zero = self._out.get("quantization", (0.0, 0))
            codes = np.arange(256, dtype=np.uint8).view(out_dtype)
            self._lut = (codes.astype(np.float32) - zero) * np.float32(scale)

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._in["dtype"])

    @property
    def output_dtype(self) -> np.dtype:
        return np.dtype(self._out["dtype"])

    @property
    def input_quantization(self) -> tuple[float, int]:
        scale, zero = self._in.get("quantization", (0.0, 0))
        return float(scale), int(zero)

    def _passes_pixels_through(self) -> bool:
        """True when the input tensor is uint8 with scale 1/255 and zero point 0: quantizing x/255 gives back
        the pixel itself, so raw pixels go in untouched (the float round trip costs more than the model's
        first layer on a one-image call)."""
        scale, zero = self.input_quantization
        return self.input_dtype == np.uint8 and zero == 0 and abs(scale * 255.0 - 1.0) < 1e-6

    def _quantize(self, images: np.ndarray) -> np.ndarray:
        """uint8 pixels (0-255) or floats in [0, 1] -> the input tensor's dtype, from its own parameters."""
        if self._pass_through and images.dtype == np.uint8:
            return np.ascontiguousarray(images.reshape(-1, *self.metadata.input_size, 1))
        x = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
        x = x.reshape(-1, *self.metadata.input_size, 1)
        dtype = self.input_dtype
        if dtype == np.float32:
            return x
        scale, zero = self.input_quantization  # finite and > 0: __init__ refuses an integer input without one
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)

    def _dequantize(self, y: np.ndarray) -> np.ndarray:
        if self._lut is not None:
            y = self._lut[y.view(np.uint8)]
        elif np.issubdtype(y.dtype, np.integer):
            scale, zero = self._out.get("quantization", (0.0, 0))
            y = (y.astype(np.float32) - zero) * scale
        y = y.astype(np.float32, copy=False)
        if self.metadata.output != "softmax":
            e = np.exp(y - y.max(axis=-1, keepdims=True))
            y = e / e.sum(axis=-1, keepdims=True)
        return y

    def _resize(self, n: int) -> None:
        if n != self._batch:
            self._interp.resize_tensor_input(self._in["index"], [n, *self.metadata.input_size, 1])
            self._interp.allocate_tensors()
            self._in = self._interp.get_input_details()[0]
            self._out = self._interp.get_output_details()[0]
            self._batch = n
            self._cache_details()

    def predict_proba(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Probabilities (N, classes) for images (N, 28, 28[, 1]), uint8 0-255 or float 0-1, white on black."""
        images = np.asarray(images)
        n = images.shape[0] if images.ndim >= 3 else 1
        out = np.empty((n, len(self.metadata.labels)), dtype=np.float32)
        for start in range(0, n, batch_size):
            chunk = self._quantize(images[start:start + batch_size])
            rows = chunk.shape[0]
            # Pad to a power of two so a stream of ragged batches reuses a few tensor allocations
            # instead of re-allocating the interpreter for every new size.
            bucket = min(1 << max(rows - 1, 0).bit_length(), max(batch_size, rows))
            if bucket > rows:
                chunk = np.concatenate([chunk, np.zeros((bucket - rows, *chunk.shape[1:]), chunk.dtype)])
            try:
                self._resize(bucket)
                self._interp.set_tensor(self._in_index, chunk)
                self._interp.invoke()
                y = self._interp.get_tensor(self._out_index)
            except (ValueError, RuntimeError) as exc:
                raise InferenceError(f"{self.path}: the model failed on a batch of {bucket} "
                                     f"({_first_line(exc)})") from None
            if y.ndim < 1 or y.shape[0] != bucket or y.size != bucket * out.shape[1]:
                raise InferenceError(f"{self.path}: output shape {y.shape} for a batch of {bucket}; "
                                     f"expected ({bucket}, {out.shape[1]})")
            out[start:start + rows] = self._dequantize(y.reshape(bucket, -1)[:rows])
        return out

    def predict(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Predicted class indices (N,)."""
        return self.predict_proba(images, batch_size).argmax(axis=-1)

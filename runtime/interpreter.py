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
from digitkit.runtime.modelcheck import check_model
from digitkit.runtime.modelfile import Malformed, metadata_entries, output_is_softmax

BACKENDS = ("litert", "tflite-runtime")
_MODULES = {"litert": "ai_edge_litert.interpreter", "tflite-runtime": "tflite_runtime.interpreter"}


@dataclass(frozen=True)
class ModelMetadata:
    """What the runtime needs to feed a model without guessing; read from the model file itself (the
    converter embeds it, see :func:`read_embedded`), else the MNIST conventions below."""

    labels: tuple[str, ...] = tuple(str(i) for i in range(10))
    input_size: tuple[int, int] = (28, 28)
    polarity: str = "white-on-black"  # MNIST: light digit on a dark background
    normalisation: str = "x/255"  # float models take pixels / 255 in [0, 1]
    output: str = "softmax"  # the last op already gives probabilities
    # The model's own "not a digit" answer: the index of that output (None: a digits-only model) and the
    # probability at which a candidate is rejected, chosen by the converter on validation data.
    not_a_digit: int | None = None
    reject_threshold: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # keys this runtime does not know yet

    def to_dict(self) -> dict[str, Any]:
        """Every field (tuples as lists) plus ``extra``: generic, so a field added here travels without more code."""
        out = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**self.extra, **out}

    @property
    def digit_indices(self) -> list[int]:
        """The outputs that are digits (every output but "not a digit")."""
        return [i for i in range(len(self.labels)) if i != self.not_a_digit]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMetadata:
        """The inverse of :meth:`to_dict`; a missing key takes its default, an unknown one lands in ``extra``."""
        base = cls()
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values = {name: _like(getattr(base, name), data[name]) for name in known if name in data}
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})


def _plain(value: Any) -> Any:
    """A field's value as JSON: tuples (nested too) become lists, dataclasses dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


# What a model with an 11th output means when nothing describes it: digitkit's "not a digit" class, rejected
# when it is the likelier answer (a converted model carries the threshold its converter measured).
NOT_A_DIGIT_CONVENTION: dict[str, Any] = {"labels": (*(str(i) for i in range(10)), "not a digit"),
                                          "not_a_digit": 10, "reject_threshold": 0.5}


def _like(default: Any, value: Any) -> Any:
    """``value`` from JSON, shaped like the field's ``default`` (lists back to tuples, numbers to their type)."""
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list, got {value!r}")
        kinds = [type(d) for d in default] or [str]
        return tuple(kinds[min(i, len(kinds) - 1)](v) for i, v in enumerate(value))
    if dataclasses.is_dataclass(default) and isinstance(value, dict):
        return type(default)(**{k: _like(getattr(default, k), v) for k, v in value.items() if hasattr(default, k)})
    if isinstance(default, bool) or default is None or isinstance(value, type(default)):
        return value
    return type(default)(value)


METADATA_NAME = "digitkit"  # the entry in the .tflite's metadata table that the converter writes
METADATA_SCHEMA = "digitkit.model/1"


def encode_metadata(metadata: ModelMetadata, **sections: Any) -> bytes:
    """The bytes the converter embeds under :data:`METADATA_NAME`: ``{"schema", "runtime", **sections}`` as JSON."""
    return json.dumps({"schema": METADATA_SCHEMA, "runtime": metadata.to_dict(), **sections},
                      sort_keys=True).encode("utf-8")


def read_embedded(data: bytes, name: str | os.PathLike[str] = "model") -> dict[str, Any] | None:
    """The digitkit metadata embedded in a .tflite's bytes (``{"schema", "runtime", ...}``), or None if the
    model carries none (a model from another tool: the MNIST conventions apply).

    Raises:
        InferenceError: the entry is there but damaged.
    """
    try:
        raw = metadata_entries(data).get(METADATA_NAME)
    except Malformed as exc:
        raise InferenceError(f"{name}: not a loadable TFLite model ({exc})") from None
    if raw is None:
        return None
    try:
        payload = json.loads(raw.decode("utf-8"))
        if not isinstance(payload, dict) or not isinstance(payload.get("runtime"), dict):
            raise ValueError("no runtime object")
        ModelMetadata.from_dict(payload["runtime"])  # refuse here, with the file's name, what cannot be used
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise InferenceError(f"{name}: the metadata embedded in the model is damaged ({exc}); "
                             "convert the model again") from None
    return payload


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


class TFLiteRunner:
    """One loaded .tflite with one input and one output tensor: pixels quantized in, the batch padded to a power
    of two, the output dequantized to float32. :class:`TFLiteModel` (a digit model) and
    :class:`digitkit.runtime.sequence.SequenceModel` build on it.

    Raises:
        InferenceError: the file is missing or unloadable, or its tensors are not one input and one output of
            a supported type.
    """

    def __init__(self, model_path: str | os.PathLike[str], backend: str | None = None,
                 threads: int | None = None) -> None:
        self.path = Path(model_path)
        self.backend, self._interp, self._data = open_interpreter(self.path, backend, threads)
        self.threads = threads
        inputs, outputs = self._interp.get_input_details(), self._interp.get_output_details()
        if len(inputs) != 1 or not outputs:
            raise InferenceError(f"{self.path}: the model has {len(inputs)} inputs and {len(outputs)} outputs; "
                                 f"{self.kind} has one image input and one output")
        self._in, self._out = inputs[0], outputs[0]
        self._batch = int(self._in["shape"][0])

    kind = "a model"
    _sample: tuple[int, ...] = ()  # one input's shape without the batch, e.g. (28, 28, 1); set by the subclass

    def _check_types(self) -> None:
        """Refuse tensor types the runtime cannot feed or read, then cache what every call needs."""
        for what, details, allowed in (("input", self._in, _INPUT_TYPES), ("output", self._out, _OUTPUT_TYPES)):
            dtype = np.dtype(details["dtype"])
            if dtype not in allowed:
                raise InferenceError(f"{self.path}: {what} type {dtype} is not supported; "
                                     f"expected one of {', '.join(str(np.dtype(t)) for t in allowed)}")
            scale = details.get("quantization", (0.0, 0))[0]
            if dtype.kind in "iu" and not (np.isfinite(scale) and scale > 0):
                raise InferenceError(f"{self.path}: integer {what} tensor without a usable quantization "
                                     f"scale ({scale}); re-convert the model")
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
            return np.ascontiguousarray(images.reshape(-1, *self._sample))
        x = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
        x = x.reshape(-1, *self._sample)
        dtype = self.input_dtype
        if dtype == np.float32:
            return x
        scale, zero = self.input_quantization  # finite and > 0: _check_types refuses an integer input without one
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)

    def _raw(self, y: np.ndarray) -> np.ndarray:
        """The output tensor's values as float32 (dequantized)."""
        if self._lut is not None:
            y = self._lut[y.view(np.uint8)]
        elif np.issubdtype(y.dtype, np.integer):
            scale, zero = self._out.get("quantization", (0.0, 0))
            y = (y.astype(np.float32) - zero) * scale
        return y.astype(np.float32, copy=False)

    def _resize(self, n: int) -> None:
        if n != self._batch:
            self._interp.resize_tensor_input(self._in["index"], [n, *self._sample])
            self._interp.allocate_tensors()
            self._in = self._interp.get_input_details()[0]
            self._out = self._interp.get_output_details()[0]
            self._batch = n
            self._cache_details()

    def _invoke(self, chunk: np.ndarray, limit: int | None = None) -> np.ndarray:
        """Run one quantized chunk, padded to a power of two (at most ``limit``, never below the chunk) so a
        stream of ragged batches reuses a few tensor allocations; the output rows of the padded batch."""
        rows = chunk.shape[0]
        bucket = 1 << max(rows - 1, 0).bit_length()
        if limit is not None:
            bucket = min(bucket, max(limit, rows))
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
        return y


class TFLiteModel(TFLiteRunner):
    """One loaded .tflite model. ``predict_proba`` takes images in MNIST polarity and gives probabilities.

    Args:
        model_path: the .tflite file.
        backend: "litert" or "tflite-runtime"; None picks the first installed.
        threads: interpreter threads (None = the backend's default).
        metadata: what the model's outputs mean, when the caller knows better than the file (the converter
            verifying a model it has not yet labelled); None reads it from the model's own metadata.
    """

    kind = "a digit model"

    def __init__(self, model_path: str | os.PathLike[str], backend: str | None = None,
                 threads: int | None = None, metadata: ModelMetadata | None = None) -> None:
        super().__init__(model_path, backend, threads)
        data = self._data
        embedded = read_embedded(data, self.path) if metadata is None else None
        self.metadata = metadata or (ModelMetadata.from_dict(embedded["runtime"]) if embedded else ModelMetadata())
        if metadata is None and embedded is None and not output_is_softmax(data):
            # Nothing in the model says what the output is, and no SOFTMAX makes it: logits, so normalise them.
            self.metadata = dataclasses.replace(self.metadata, output="logits")
        self._sample = (*self.metadata.input_size, 1)
        shape = tuple(int(s) for s in self._in["shape"])
        if len(shape) != 4 or shape[1:] != self._sample:
            raise InferenceError(f"{self.path}: input shape {shape} is not (N, 28, 28, 1); not a digit model")
        out_shape = tuple(int(s) for s in self._out["shape"])
        described = metadata is not None or embedded is not None
        if not described and out_shape and out_shape[-1] == len(self.metadata.labels) + 1:
            # Undescribed, with one output more than the digits: digitkit's convention for "not a digit".
            self.metadata = dataclasses.replace(self.metadata, **NOT_A_DIGIT_CONVENTION)
        if not out_shape or out_shape[-1] != len(self.metadata.labels):
            raise InferenceError(f"{self.path}: output shape {out_shape} does not give "
                                 f"{len(self.metadata.labels)} classes")
        self._check_types()

    def _dequantize(self, y: np.ndarray) -> np.ndarray:
        y = self._raw(y)
        if self.metadata.output != "softmax":
            e = np.exp(y - y.max(axis=-1, keepdims=True))
            y = e / e.sum(axis=-1, keepdims=True)
        return y

    def predict_proba(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Probabilities (N, classes) for images (N, 28, 28[, 1]), uint8 0-255 or float 0-1, white on black."""
        images = np.asarray(images)
        n = images.shape[0] if images.ndim >= 3 else 1
        out = np.empty((n, len(self.metadata.labels)), dtype=np.float32)
        for start in range(0, n, batch_size):
            chunk = self._quantize(images[start:start + batch_size])
            rows = chunk.shape[0]
            y = self._invoke(chunk, limit=batch_size)
            bucket = self._batch
            if y.ndim < 1 or y.shape[0] != bucket or y.size != bucket * out.shape[1]:
                raise InferenceError(f"{self.path}: output shape {y.shape} for a batch of {bucket}; "
                                     f"expected ({bucket}, {out.shape[1]})")
            out[start:start + rows] = self._dequantize(y.reshape(bucket, -1)[:rows])
        return out

    def predict(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Predicted class indices (N,)."""
        return self.predict_proba(images, batch_size).argmax(axis=-1)

"""Make sure a .tflite file cannot take the process down before the native interpreter sees it.

The TFLite interpreter is C++: a malformed flatbuffer or a kernel fed an impossible shape can end in
SIGSEGV instead of a Python exception. A model goes through two gates, on the exact bytes the interpreter
will then load (read once, passed as ``model_content``, so the file cannot change in between):

1. :func:`verify_structure` walks the flatbuffer in Python: every table, vtable, vector and string in
   bounds; tensor, buffer, opcode and subgraph indices in range; shapes sane; constant buffers as big as
   their tensors. It rejects most damage in about a millisecond with a message that says what is wrong.
2. :func:`probe` loads the bytes in a throw-away child process, allocates, resizes the input's batch and
   invokes on constant inputs, under a timeout. Whatever the first gate missed, a crash or a hang happens
   there and becomes an :class:`InferenceError`.

Verdicts are cached per process by SHA-256, and a passed probe is remembered on disk (:func:`cache_dir`) so
a custom model pays the ~0.2 s child once, not on every run; the model shipped in ``runtime/models`` is
known by its hash and skips both gates, so the default ``digitkit classify`` pays nothing.
"""

from __future__ import annotations

import hashlib
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

from digitkit.runtime.errors import InferenceError

# SHA-256 of the models shipped in runtime/models (tests/runtime/test_model_fuzz.py keeps this current).
TRUSTED_SHA256 = frozenset({"5e17260442a53d6984f1d9a3884900067338ce0fc0ffa2bda00ddbcb80cc2e40"})
MAX_MODEL_BYTES = 2**31 - 1  # flatbuffers cannot address more
PROBE_TIMEOUT_S = 30.0  # default; $DIGITKIT_PROBE_TIMEOUT overrides it (a slow board, or emulation)
_MAX_TABLES = 200_000
_MAX_ELEMENTS = 2**31  # elements in one tensor
_MAX_RANK = 8

# Bytes per element of the TensorType values whose constant buffers have a fixed size (schema.fbs order).
_ITEMSIZE = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8, 15: 4, 16: 2, 18: 2,
             21: 1, 22: 1}
_N_TENSOR_TYPES = 23
_MIN_SCALE, _MAX_SCALE = 1e-30, 1e30
# Zero points must be codes of the tensor's type: UINT8, INT16, INT8, INT4, UINT4 (by TensorType value).
_ZERO_POINT_RANGE = {3: (0, 255), 7: (-32768, 32767), 9: (-128, 127), 17: (-8, 7), 20: (0, 15)}

# The tables the walker knows: slot -> kind. Slot n is the n-th field of the table in schema.fbs.
# Scalars are (size,), "t:Name" a sub-table, "vt:Name" a vector of tables, "v:N" a vector of N-byte
# scalars ("vf" of float32), "s" a string, "vs" a vector of strings, "opt" the builtin-options union member.
_SCHEMA: dict[str, dict[int, object]] = {
    "Model": {0: 4, 1: "vt:OperatorCode", 2: "vt:SubGraph", 3: "s", 4: "vt:Buffer", 5: "v:4",
              6: "vt:Metadata", 7: "vt:SignatureDef", 8: "vt:?", 9: "vt:?"},
    "SubGraph": {0: "vt:Tensor", 1: "v:4", 2: "v:4", 3: "vt:Operator", 4: "s", 5: 4},
    "Tensor": {0: "v:4", 1: 1, 2: 4, 3: "s", 4: "t:Quantization", 5: 1, 6: "t:?", 7: "v:4", 8: 1,
               9: "vt:?", 10: 4},
    "Operator": {0: 4, 1: "v:4", 2: "v:4", 3: 1, 4: "opt", 5: "v:1", 6: 1, 7: "v:1", 8: "v:4", 9: 8, 10: 8,
                 11: 1, 12: "t:?", 13: 4},
    "Buffer": {0: "v:1", 1: 8, 2: 8},
    "OperatorCode": {0: 1, 1: "s", 2: 4, 3: 4},
    "Quantization": {0: "v:4", 1: "v:4", 2: "vf", 3: "v:8", 4: 1, 5: "t:?", 6: 4},
    "Metadata": {0: "s", 1: 4},
    "SignatureDef": {0: "vt:TensorMap", 1: "vt:TensorMap", 2: "s", 4: 4},
    "TensorMap": {0: "s", 1: 4},
    "?": {},  # a table the runtime does not interpret itself: vtable and field bounds only
}
# The builtin-options tables that hold vectors, by BuiltinOptions code: ConcatEmbeddings, FullyConnected,
# Reshape, Squeeze, Bucketize. Every other options table holds scalars only.
_OPTION_VECTORS: dict[int, dict[int, object]] = {3: {1: "v:4", 2: "v:4"}, 8: {5: "v:1"}, 17: {0: "v:4"},
                                                 30: {0: "v:4"}, 115: {0: "v:4"}}


class _Bad(Exception):
    """Structural damage found by the walker; becomes an InferenceError with the model's name."""


class _Walker:
    """Bounds-checked reads of a flatbuffer, recording where every field lives (the fuzzer aims there)."""

    def __init__(self, data: bytes, record: bool = False) -> None:
        self.data = data
        self.n = len(data)
        self.tables = 0
        self.positions: list[tuple[int, int]] | None = [] if record else None  # (offset, size)

    def _note(self, pos: int, size: int) -> None:
        if self.positions is not None:
            self.positions.append((pos, size))

    def u(self, pos: int, fmt: str) -> int:
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > self.n:
            raise _Bad(f"a field at byte {pos} lies outside the {self.n}-byte file")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def deref(self, pos: int) -> int:
        """Follow the uoffset stored at ``pos``."""
        self._note(pos, 4)
        target = pos + self.u(pos, "<I")
        if target >= self.n or target % 4:
            raise _Bad(f"an offset at byte {pos} points to {target}, outside the file or misaligned")
        return target

    def vector(self, pos: int, elem: int) -> tuple[int, int]:
        """(first element, length) of the vector whose uoffset is at ``pos``."""
        vec = self.deref(pos)
        length = self.u(vec, "<I")
        self._note(vec, 4)
        if vec + 4 + length * elem > self.n:
            raise _Bad(f"a vector at byte {vec} claims {length} elements, past the end of the file")
        return vec + 4, length

    def string(self, pos: int) -> bytes:
        start, length = self.vector(pos, 1)
        if start + length >= self.n or self.data[start + length] != 0:
            raise _Bad(f"a string at byte {start} is not terminated inside the file")
        return self.data[start:start + length]

    def table(self, pos: int, name: str | int) -> dict[int, object]:
        """Check the table at ``pos`` and return {slot: value}: scalars as ints, sub-tables as dicts,
        vectors as lists (of ints or dicts); byte vectors as (start, length)."""
        self.tables += 1
        if self.tables > _MAX_TABLES:
            raise _Bad(f"more than {_MAX_TABLES} tables; not a model this runtime can load")
        vt = pos - self.u(pos, "<i")
        self._note(pos, 4)
        vt_size, t_size = self.u(vt, "<H"), self.u(vt + 2, "<H")
        if vt % 2 or vt_size < 4 or vt_size % 2 or t_size < 4 or pos + t_size > self.n:
            raise _Bad(f"the table at byte {pos} has a damaged vtable at byte {vt}")
        self.u(vt + vt_size - 1, "<B")  # the whole vtable is inside the file
        schema = _OPTION_VECTORS.get(name, {}) if isinstance(name, int) else _SCHEMA[name]
        fields: dict[int, object] = {}
        union_at = 0
        for slot in range((vt_size - 4) // 2):
            off = self.u(vt + 4 + 2 * slot, "<H")
            self._note(vt + 4 + 2 * slot, 2)
            if not off:
                continue
            kind = schema.get(slot, 1)
            size = kind if isinstance(kind, int) else 4
            if off + size > t_size:
                raise _Bad(f"field {slot} of a {name} table at byte {pos} lies outside the table")
            if kind == "opt":
                union_at = pos + off
                continue
            fields[slot] = self._field(pos + off, kind, size)
        if union_at:  # builtin_options: its table type is the operator's builtin_options_type
            fields[4] = self.table(self.deref(union_at), int(fields.get(3, 0)))  # type: ignore[arg-type]
        return fields

    def _field(self, at: int, kind: object, size: int) -> object:
        if isinstance(kind, int):
            self._note(at, size)
            return self.u(at, {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}[size])
        assert isinstance(kind, str)
        if kind == "s":
            return self.string(at)
        if kind.startswith("t:"):
            return self.table(self.deref(at), kind[2:])
        if kind.startswith("vt:"):
            start, length = self.vector(at, 4)
            return [self.table(self.deref(start + 4 * i), kind[3:]) for i in range(length)]
        if kind == "v:1":
            return self.vector(at, 1)
        if kind in ("v:4", "v:8", "vf"):
            elem = 8 if kind == "v:8" else 4
            start, length = self.vector(at, elem)
            fmt = {"v:4": "<i", "v:8": "<q", "vf": "<f"}[kind]
            for i in range(min(length, 64)):
                self._note(start + elem * i, elem)
            return [struct.unpack_from(fmt, self.data, start + elem * i)[0] for i in range(length)]
        raise AssertionError(kind)


def _walk(data: bytes, record: bool = False) -> tuple[dict[int, object], _Walker]:
    if len(data) < 8:
        raise _Bad(f"only {len(data)} bytes")
    if data[4:8] != b"TFL3":
        raise _Bad("no TFL3 identifier at byte 4")
    w = _Walker(data, record)
    return w.table(w.deref(0), "Model"), w


def verify_structure(data: bytes, name: str | os.PathLike[str] = "model") -> list[tuple[int, int]]:
    """Check that ``data`` is a well-formed TFLite flatbuffer whose indices, shapes and buffers agree.

    Returns:
        Where each field lives, as (byte offset, size): the fuzzer aims mutations there.

    Raises:
        InferenceError: the first problem found, naming the model.
    """
    try:
        model, walker = _walk(data, record=True)
        _check_semantics(model, len(data))
    except _Bad as exc:
        raise InferenceError(f"{name}: not a loadable TFLite model ({exc})") from None
    return walker.positions or []


def _structure_problem(data: bytes) -> str:
    try:
        _check_semantics(_walk(data)[0], len(data))
    except _Bad as exc:
        return str(exc)
    return ""


def _check_semantics(model: dict[int, object], size: int) -> None:
    graphs: list = model.get(2, [])  # type: ignore[assignment]
    buffers: list = model.get(4, [])  # type: ignore[assignment]
    opcodes: list = model.get(1, [])  # type: ignore[assignment]
    if not graphs:
        raise _Bad("no subgraph")
    for i, buf in enumerate(buffers):
        offset, length = buf.get(1, 0), buf.get(2, 0)
        if offset > 1 and offset + length > size:
            raise _Bad(f"buffer {i} points at bytes {offset}..{offset + length}, past the end of the file")
    for i, code in enumerate(opcodes):
        builtin = max(code.get(3, 0), _signed8(code.get(0, 0)))
        if builtin < 0 or builtin > 1000:
            raise _Bad(f"operator code {i} has an unknown builtin operator {builtin}")
    for index in model.get(5, []):  # type: ignore[union-attr]
        if not 0 <= index < len(buffers):
            raise _Bad(f"metadata buffer {index} out of range (the model has {len(buffers)} buffers)")
    for meta in model.get(6, []):  # type: ignore[union-attr]
        if meta.get(1, 0) >= len(buffers):
            raise _Bad(f"metadata points at buffer {meta.get(1)} of {len(buffers)}")
    for sig in model.get(7, []):  # type: ignore[union-attr]
        g = sig.get(4, 0)
        if g >= len(graphs):
            raise _Bad(f"a signature names subgraph {g} of {len(graphs)}")
        n = len(graphs[g].get(0, []))
        for tmap in (*sig.get(0, []), *sig.get(1, [])):
            if tmap.get(1, 0) >= n:
                raise _Bad(f"a signature names tensor {tmap.get(1)} of {n}")
    for g, graph in enumerate(graphs):
        tensors = graph.get(0, [])
        n = len(tensors)
        for t, tensor in enumerate(tensors):
            _check_tensor(f"subgraph {g} tensor {t}", tensor, buffers)
        for which, slot in (("input", 1), ("output", 2)):
            for index in graph.get(slot, []):
                if not 0 <= index < n:
                    raise _Bad(f"subgraph {g} {which} {index} out of range ({n} tensors)")
        for o, op in enumerate(graph.get(3, [])):
            if op.get(0, 0) >= len(opcodes):
                raise _Bad(f"subgraph {g} operator {o} uses opcode {op.get(0)} of {len(opcodes)}")
            for which, slot in (("input", 1), ("output", 2), ("intermediate", 8)):
                for index in op.get(slot, []):
                    if not -1 <= index < n:
                        raise _Bad(f"subgraph {g} operator {o} {which} tensor {index} out of range ({n})")


def _signed8(value: int) -> int:
    return value - 256 if value > 127 else value


def _check_tensor(where: str, tensor: dict, buffers: list) -> None:
    shape = [_signed32(d) for d in tensor.get(0, [])]
    dtype = tensor.get(1, 0)
    if dtype >= _N_TENSOR_TYPES:
        raise _Bad(f"{where} has unknown type {dtype}")
    if len(shape) > _MAX_RANK or any(d < 0 for d in shape):
        raise _Bad(f"{where} has shape {shape}")
    elements = 1
    for d in shape:
        elements *= d
    if elements > _MAX_ELEMENTS:
        raise _Bad(f"{where} has {elements} elements")
    buf = tensor.get(2, 0)
    if buf >= len(buffers):
        raise _Bad(f"{where} uses buffer {buf} of {len(buffers)}")
    data = buffers[buf].get(0) if buffers else None
    if data and data[1] and dtype in _ITEMSIZE and tensor.get(6) is None:
        if data[1] != elements * _ITEMSIZE[dtype]:
            raise _Bad(f"{where} has shape {shape} but its constant buffer holds {data[1]} bytes")
    quant = tensor.get(4)
    if quant:
        scales, zeros = quant.get(2, []), quant.get(3, [])
        if zeros and len(zeros) != len(scales):
            raise _Bad(f"{where} has {len(scales)} scales but {len(zeros)} zero points")
        # A zero, subnormal, negative or infinite scale makes the kernels' fixed-point multipliers
        # overflow in Prepare (a SIGSEGV found by the fuzzer); so does a zero point outside the type.
        bad_scale = next((x for x in scales if not _MIN_SCALE <= x <= _MAX_SCALE), None)
        if bad_scale is not None:
            raise _Bad(f"{where} has quantization scale {bad_scale}")
        low, high = _ZERO_POINT_RANGE.get(dtype, (-(2**31), 2**31 - 1))
        bad_zero = next((z for z in zeros if not low <= z <= high), None)
        if bad_zero is not None:
            raise _Bad(f"{where} has zero point {bad_zero}, outside [{low}, {high}] for its type")
        if len(scales) > 1:
            dim = _signed32(quant.get(6, 0))
            if not 0 <= dim < len(shape) or shape[dim] != len(scales):
                raise _Bad(f"{where} has {len(scales)} per-channel scales for shape {shape} (axis {dim})")


def _signed32(value: int) -> int:
    return value - 2**32 if value >= 2**31 else value


# Runs in the child: only the interpreter and numpy, nothing of digitkit (so it works wherever the runtime
# does). Loads, allocates, then invokes at every batch size TFLiteModel.predict_proba pads to (powers of
# two up to its default 256): a float model from the fuzzer corrupted the heap at batch 8 but not at 1 or 2.
# Batches 1 and 2 also get all-max inputs, the rest zeros.
_PROBE = r"""
import sys
import numpy as np
interpreter_cls = __import__(sys.argv[1], fromlist=["Interpreter"]).Interpreter
data = sys.stdin.buffer.read()
try:
    interp = interpreter_cls(model_content=data, num_threads=1)
    interp.allocate_tensors()
    for batch in (1, 2, 4, 8, 16, 32, 64, 128, 256):
        first = interp.get_input_details()[0]
        if len(first["shape"]) >= 1:
            interp.resize_tensor_input(first["index"], [batch, *first["shape"][1:]])
        interp.allocate_tensors()
        for fill in ("min", "max") if batch <= 2 else ("min",):
            for d in interp.get_input_details():
                dtype = np.dtype(d["dtype"])
                value = 0 if fill == "min" else (np.iinfo(dtype).max if dtype.kind in "iu" else 1)
                interp.set_tensor(d["index"], np.full(d["shape"], value, dtype))
            interp.invoke()
            for d in interp.get_output_details():
                interp.get_tensor(d["index"])
except Exception as exc:
    sys.stdout.write((str(exc).strip().splitlines() or [type(exc).__name__])[0][:200])
    sys.exit(3)
"""

_VERDICTS: dict[tuple[str, str], str] = {}  # (sha256, interpreter module) -> "" if fine, else the reason


def probe_timeout() -> float:
    """Seconds the child may take: ``$DIGITKIT_PROBE_TIMEOUT`` if set, else :data:`PROBE_TIMEOUT_S`. Emulated
    arm64 (``make test-pi``) starts Python 10-50 times slower, and a busy machine slower still.

    Raises:
        InferenceError: the variable is not a positive number of seconds.
    """
    env = os.environ.get("DIGITKIT_PROBE_TIMEOUT", "").strip()
    if not env:
        return PROBE_TIMEOUT_S
    try:
        value = float(env)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise InferenceError(f"DIGITKIT_PROBE_TIMEOUT={env!r} is not a positive number of seconds; "
                             "unset it for the default 30")
    return value


def probe(data: bytes, module: str, timeout: float | None = None) -> str:
    """Load and run ``data`` in a child process with interpreter module ``module``, for at most ``timeout``
    seconds (default: :func:`probe_timeout`).

    Returns:
        "" if the child loaded, allocated and invoked it; else why not (its error, or the signal that
        killed it, or the timeout).
    """
    timeout = probe_timeout() if timeout is None else timeout
    try:
        done = subprocess.run([sys.executable, "-P", "-c", _PROBE, module], input=data, capture_output=True,
                              timeout=timeout, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        return f"loading it did not finish within {timeout:g} s"
    except OSError as exc:  # cannot start a process at all: refuse rather than risk the native load in-process
        return f"could not start the model check ({exc})"
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        return f"the interpreter crashed on it ({name})"
    if done.returncode:
        return done.stdout.decode("utf-8", "replace").strip() or f"the check exited with {done.returncode}"
    return ""


def check_model(data: bytes, module: str, name: str | os.PathLike[str] = "model",
                timeout: float | None = None) -> None:
    """Refuse ``data`` unless it is safe to hand to the interpreter in this process: a known shipped model,
    or a well-formed flatbuffer that a child process loaded and ran. Cached per process by SHA-256.

    Args:
        data: the model's bytes, exactly as they will be loaded.
        module: the interpreter module, e.g. "ai_edge_litert.interpreter".
        name: how to name the model in messages (its path).

    Raises:
        InferenceError: malformed, or it failed, crashed or hung in the child.
    """
    digest = hashlib.sha256(data).hexdigest()
    if digest in TRUSTED_SHA256:
        return
    key = (digest, module)
    if key not in _VERDICTS:
        reason = _structure_problem(data)
        if not reason and not _marker(digest, module, exists=True):
            reason = probe(data, module, timeout)
            if not reason:
                _marker(digest, module, exists=False)
        _VERDICTS[key] = reason
    reason = _VERDICTS[key]
    if reason:
        raise InferenceError(f"{name}: not a loadable TFLite model ({reason})")


def cache_dir() -> Path | None:
    """Where passed probes are remembered across runs: ``$DIGITKIT_CACHE_DIR`` (``off`` or empty: nowhere),
    else ``$XDG_CACHE_HOME/digitkit`` or ``~/.cache/digitkit``."""
    env = os.environ.get("DIGITKIT_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in ("", "off") else Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "digitkit"


def _marker(digest: str, module: str, exists: bool) -> bool:
    """Check for (``exists=True``) or leave (``exists=False``) an empty file saying these bytes passed the
    probe with this build of the interpreter, so the next run of a custom model skips the ~0.2 s child.
    Anyone who can write there can also replace the installed interpreter, so it trusts nothing new."""
    root = cache_dir()
    mod = sys.modules.get(module)
    if root is None or mod is None or not getattr(mod, "__file__", None):
        return False
    try:
        st = os.stat(mod.__file__)  # type: ignore[arg-type]
        path = root / "checked-models" / f"{digest}.{module}.{st.st_size}-{st.st_mtime_ns}"
        if exists:
            return path.is_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError:  # a read-only or full disk only costs the next run a probe
        return False
    return True


_SOFTMAX, _DEQUANTIZE, _QUANTIZE = 25, 6, 114  # BuiltinOperator values


def output_is_softmax(data: bytes) -> bool:
    """True when the first subgraph's first output comes out of a SOFTMAX (through any (de)quantize at the
    interface): the model gives probabilities. False for logits, or when the bytes cannot be read."""
    try:
        model = _walk(data)[0]
        graph = model[2][0]  # type: ignore[index]
        codes = [max(c.get(3, 0), _signed8(c.get(0, 0))) for c in model.get(1, [])]  # type: ignore[union-attr]
        producer = {t: op for op in graph.get(3, []) for t in op.get(2, [])}
        tensor = graph[2][0]
        for _ in range(4):
            op = producer.get(tensor)
            if op is None:
                return False
            code = codes[op.get(0, 0)]
            if code != _DEQUANTIZE and code != _QUANTIZE:
                return code == _SOFTMAX
            tensor = op[1][0]
    except (_Bad, KeyError, IndexError, TypeError):
        return False
    return False

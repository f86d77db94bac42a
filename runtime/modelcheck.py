"""Make sure a .tflite file cannot take the process down before the native interpreter sees it.

The TFLite interpreter is C++: a malformed flatbuffer or a kernel fed an impossible shape can end in
SIGSEGV instead of a Python exception. A model goes through two gates, on the exact bytes the interpreter
will then load (read once, passed as ``model_content``, so the file cannot change in between):

1. :func:`verify_structure` walks the flatbuffer in Python (:mod:`digitkit.runtime.modelfile`): every table,
   vtable, vector and string in bounds; tensor, buffer, opcode and subgraph indices in range; shapes sane;
   constant buffers as big as their tensors. It rejects most damage in about a millisecond with a message
   that says what is wrong.
2. :func:`digitkit.runtime.probe.probe` loads the bytes in a throw-away child process, allocates, resizes the
   input's batch and invokes on constant inputs, under a timeout. Whatever the first gate missed, a crash or
   a hang happens there and becomes an :class:`InferenceError`.

Verdicts are cached per process by SHA-256, and a passed probe is remembered on disk so a custom model pays
the ~0.2 s child once, not on every run; the model shipped in ``runtime/models`` is known by its hash and
skips both gates, so the default ``digitkit classify`` pays nothing.
"""

from __future__ import annotations

import hashlib
import os

from digitkit.runtime.errors import InferenceError
from digitkit.runtime.modelfile import Malformed, signed8, walk
from digitkit.runtime.probe import marker, probe

# SHA-256 of the models shipped in runtime/models (tests/runtime/test_model_fuzz.py keeps this current).
TRUSTED_SHA256 = frozenset({"4816b19bc926359403a591526b582c009f82c484f88633c09af5b9ed527391ed",  # fast
                            "22f63966b3ae6b26060c6be2c8e3d620327bac7c1eaf237ddacb4cf08d7e131a",  # accurate
                            "6054e51c3ffebaf219852bf51e1ae03db4a968730f2e9bbe6bc70ca770e31380"})  # sequence
_MAX_ELEMENTS = 2**31  # elements in one tensor
_MAX_RANK = 8

# Bytes per element of the TensorType values whose constant buffers have a fixed size (schema.fbs order).
_ITEMSIZE = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8, 15: 4, 16: 2, 18: 2,
             21: 1, 22: 1}
_N_TENSOR_TYPES = 23
_MIN_SCALE, _MAX_SCALE = 1e-30, 1e30
# Zero points must be codes of the tensor's type: UINT8, INT16, INT8, INT4, UINT4 (by TensorType value).
_ZERO_POINT_RANGE = {3: (0, 255), 7: (-32768, 32767), 9: (-128, 127), 17: (-8, 7), 20: (0, 15)}


def verify_structure(data: bytes, name: str | os.PathLike[str] = "model") -> list[tuple[int, int]]:
    """Check that ``data`` is a well-formed TFLite flatbuffer whose indices, shapes and buffers agree.

    Returns:
        Where each field lives, as (byte offset, size): the fuzzer aims mutations there.

    Raises:
        InferenceError: the first problem found, naming the model.
    """
    try:
        model, walker = walk(data, record=True)
        _check_semantics(model, len(data))
    except Malformed as exc:
        raise InferenceError(f"{name}: not a loadable TFLite model ({exc})") from None
    return walker.positions or []


def _structure_problem(data: bytes) -> str:
    try:
        _check_semantics(walk(data)[0], len(data))
    except Malformed as exc:
        return str(exc)
    return ""


def _check_semantics(model: dict[int, object], size: int) -> None:
    graphs: list = model.get(2, [])  # type: ignore[assignment]
    buffers: list = model.get(4, [])  # type: ignore[assignment]
    opcodes: list = model.get(1, [])  # type: ignore[assignment]
    if not graphs:
        raise Malformed("no subgraph")
    for i, buf in enumerate(buffers):
        offset, length = buf.get(1, 0), buf.get(2, 0)
        if offset > 1 and offset + length > size:
            raise Malformed(f"buffer {i} points at bytes {offset}..{offset + length}, past the end of the file")
    for i, code in enumerate(opcodes):
        builtin = max(code.get(3, 0), signed8(code.get(0, 0)))
        if builtin < 0 or builtin > 1000:
            raise Malformed(f"operator code {i} has an unknown builtin operator {builtin}")
    for index in model.get(5, []):  # type: ignore[union-attr]
        if not 0 <= index < len(buffers):
            raise Malformed(f"metadata buffer {index} out of range (the model has {len(buffers)} buffers)")
    for meta in model.get(6, []):  # type: ignore[union-attr]
        if meta.get(1, 0) >= len(buffers):
            raise Malformed(f"metadata points at buffer {meta.get(1)} of {len(buffers)}")
    for sig in model.get(7, []):  # type: ignore[union-attr]
        g = sig.get(4, 0)
        if g >= len(graphs):
            raise Malformed(f"a signature names subgraph {g} of {len(graphs)}")
        n = len(graphs[g].get(0, []))
        for tmap in (*sig.get(0, []), *sig.get(1, [])):
            if tmap.get(1, 0) >= n:
                raise Malformed(f"a signature names tensor {tmap.get(1)} of {n}")
    for g, graph in enumerate(graphs):
        tensors = graph.get(0, [])
        n = len(tensors)
        for t, tensor in enumerate(tensors):
            _check_tensor(f"subgraph {g} tensor {t}", tensor, buffers)
        for which, slot in (("input", 1), ("output", 2)):
            for index in graph.get(slot, []):
                if not 0 <= index < n:
                    raise Malformed(f"subgraph {g} {which} {index} out of range ({n} tensors)")
        for o, op in enumerate(graph.get(3, [])):
            if op.get(0, 0) >= len(opcodes):
                raise Malformed(f"subgraph {g} operator {o} uses opcode {op.get(0)} of {len(opcodes)}")
            for which, slot in (("input", 1), ("output", 2), ("intermediate", 8)):
                for index in op.get(slot, []):
                    if not -1 <= index < n:
                        raise Malformed(f"subgraph {g} operator {o} {which} tensor {index} out of range ({n})")


def _check_tensor(where: str, tensor: dict, buffers: list) -> None:
    shape = [_signed32(d) for d in tensor.get(0, [])]
    dtype = tensor.get(1, 0)
    if dtype >= _N_TENSOR_TYPES:
        raise Malformed(f"{where} has unknown type {dtype}")
    if len(shape) > _MAX_RANK or any(d < 0 for d in shape):
        raise Malformed(f"{where} has shape {shape}")
    elements = 1
    for d in shape:
        elements *= d
    if elements > _MAX_ELEMENTS:
        raise Malformed(f"{where} has {elements} elements")
    buf = tensor.get(2, 0)
    if buf >= len(buffers):
        raise Malformed(f"{where} uses buffer {buf} of {len(buffers)}")
    data = buffers[buf].get(0) if buffers else None
    if data and data[1] and dtype in _ITEMSIZE and tensor.get(6) is None:
        if data[1] != elements * _ITEMSIZE[dtype]:
            raise Malformed(f"{where} has shape {shape} but its constant buffer holds {data[1]} bytes")
    quant = tensor.get(4)
    if quant:
        scales, zeros = quant.get(2, []), quant.get(3, [])
        if zeros and len(zeros) != len(scales):
            raise Malformed(f"{where} has {len(scales)} scales but {len(zeros)} zero points")
        # A zero, subnormal, negative or infinite scale makes the kernels' fixed-point multipliers
        # overflow in Prepare (a SIGSEGV found by the fuzzer); so does a zero point outside the type.
        bad_scale = next((x for x in scales if not _MIN_SCALE <= x <= _MAX_SCALE), None)
        if bad_scale is not None:
            raise Malformed(f"{where} has quantization scale {bad_scale}")
        low, high = _ZERO_POINT_RANGE.get(dtype, (-(2**31), 2**31 - 1))
        bad_zero = next((z for z in zeros if not low <= z <= high), None)
        if bad_zero is not None:
            raise Malformed(f"{where} has zero point {bad_zero}, outside [{low}, {high}] for its type")
        if len(scales) > 1:
            dim = _signed32(quant.get(6, 0))
            if not 0 <= dim < len(shape) or shape[dim] != len(scales):
                raise Malformed(f"{where} has {len(scales)} per-channel scales for shape {shape} (axis {dim})")


def _signed32(value: int) -> int:
    return value - 2**32 if value >= 2**31 else value


_VERDICTS: dict[tuple[str, str], str] = {}  # (sha256, interpreter module) -> "" if fine, else the reason


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
        if not reason and not marker(digest, module, exists=True):
            reason = probe(data, module, timeout)
            if not reason:
                marker(digest, module, exists=False)
        _VERDICTS[key] = reason
    reason = _VERDICTS[key]
    if reason:
        raise InferenceError(f"{name}: not a loadable TFLite model ({reason})")

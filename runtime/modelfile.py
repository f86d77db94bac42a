"""Read a .tflite file's structure in pure Python: no flatbuffers package, no interpreter, no TensorFlow.

This is the runtime's one reader of the TFLite flatbuffer. Every read is bounds-checked (:class:`Walker`), so a
damaged or hostile file raises :class:`Malformed` instead of crashing anything; :mod:`digitkit.runtime.modelcheck`
builds its structural checks on it, and the runtime reads a model's embedded metadata and output kind with it.
The converters write models through the schema bindings generated from ``schema.fbs`` (shipped inside
``ai_edge_litert``); ``tests/runtime/test_modelfile.py`` holds the slot tables below equal to those bindings.
"""

from __future__ import annotations

import struct

_MAX_TABLES = 200_000

# The tables the walker knows: slot -> kind. Slot n is the n-th field of the table in schema.fbs.
# Scalars are (size,), "t:Name" a sub-table, "vt:Name" a vector of tables, "v:N" a vector of N-byte
# scalars ("vf" of float32), "s" a string, "vs" a vector of strings, "opt" the builtin-options union member.
SCHEMA: dict[str, dict[int, object]] = {
    "Model": {0: 4, 1: "vt:OperatorCode", 2: "vt:SubGraph", 3: "s", 4: "vt:Buffer", 5: "v:4",
              6: "vt:Metadata", 7: "vt:SignatureDef", 8: "vt:?", 9: "vt:?"},
    "SubGraph": {0: "vt:Tensor", 1: "v:4", 2: "v:4", 3: "vt:Operator", 4: "s", 5: 4},
    "Tensor": {0: "v:4", 1: 1, 2: 4, 3: "s", 4: "t:Quantization", 5: 1, 6: "t:?", 7: "v:4", 8: 1,
               9: "vt:?", 10: 4},
    "Operator": {0: 4, 1: "v:4", 2: "v:4", 3: 1, 4: "opt", 5: "v:1", 6: 1, 7: "v:1", 8: "v:4", 9: 8, 10: 8,
                 11: 1, 12: "t:?", 13: 4},
    "Buffer": {0: "v:1", 1: 8, 2: 8},
    "OperatorCode": {0: 1, 1: "s", 2: 4, 3: 4},
    "Quantization": {0: "vf", 1: "vf", 2: "vf", 3: "v:8", 4: 1, 5: "t:?", 6: 4},
    "Metadata": {0: "s", 1: 4},
    "SignatureDef": {0: "vt:TensorMap", 1: "vt:TensorMap", 2: "s", 4: 4},
    "TensorMap": {0: "s", 1: 4},
    "?": {},  # a table the runtime does not interpret itself: vtable and field bounds only
}
# The builtin-options tables that hold vectors, by BuiltinOptions code: ConcatEmbeddings, FullyConnected,
# Reshape, Squeeze, Bucketize. Every other options table holds scalars only.
_OPTION_VECTORS: dict[int, dict[int, object]] = {3: {1: "v:4", 2: "v:4"}, 8: {5: "v:1"}, 17: {0: "v:4"},
                                                 30: {0: "v:4"}, 115: {0: "v:4"}}


class Malformed(Exception):
    """Structural damage found by the walker; becomes an InferenceError with the model's name."""


class Walker:
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
            raise Malformed(f"a field at byte {pos} lies outside the {self.n}-byte file")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def deref(self, pos: int) -> int:
        """Follow the uoffset stored at ``pos``."""
        self._note(pos, 4)
        target = pos + self.u(pos, "<I")
        if target >= self.n or target % 4:
            raise Malformed(f"an offset at byte {pos} points to {target}, outside the file or misaligned")
        return target

    def vector(self, pos: int, elem: int) -> tuple[int, int]:
        """(first element, length) of the vector whose uoffset is at ``pos``."""
        vec = self.deref(pos)
        length = self.u(vec, "<I")
        self._note(vec, 4)
        if vec + 4 + length * elem > self.n:
            raise Malformed(f"a vector at byte {vec} claims {length} elements, past the end of the file")
        return vec + 4, length

    def string(self, pos: int) -> bytes:
        start, length = self.vector(pos, 1)
        if start + length >= self.n or self.data[start + length] != 0:
            raise Malformed(f"a string at byte {start} is not terminated inside the file")
        return self.data[start:start + length]

    def table(self, pos: int, name: str | int) -> dict[int, object]:
        """Check the table at ``pos`` and return {slot: value}: scalars as ints, sub-tables as dicts,
        vectors as lists (of ints or dicts); byte vectors as (start, length)."""
        self.tables += 1
        if self.tables > _MAX_TABLES:
            raise Malformed(f"more than {_MAX_TABLES} tables; not a model this runtime can load")
        vt = pos - self.u(pos, "<i")
        self._note(pos, 4)
        vt_size, t_size = self.u(vt, "<H"), self.u(vt + 2, "<H")
        if vt % 2 or vt_size < 4 or vt_size % 2 or t_size < 4 or pos + t_size > self.n:
            raise Malformed(f"the table at byte {pos} has a damaged vtable at byte {vt}")
        self.u(vt + vt_size - 1, "<B")  # the whole vtable is inside the file
        schema = _OPTION_VECTORS.get(name, {}) if isinstance(name, int) else SCHEMA[name]
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
                raise Malformed(f"field {slot} of a {name} table at byte {pos} lies outside the table")
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


def walk(data: bytes, record: bool = False) -> tuple[dict[int, object], Walker]:
    if len(data) < 8:
        raise Malformed(f"only {len(data)} bytes")
    if data[4:8] != b"TFL3":
        raise Malformed("no TFL3 identifier at byte 4")
    w = Walker(data, record)
    return w.table(w.deref(0), "Model"), w


def signed8(value: int) -> int:
    """An OperatorCode's deprecated int8 builtin code, read as unsigned, back to its signed value."""
    return value - 256 if value > 127 else value


_SOFTMAX, _DEQUANTIZE, _QUANTIZE = 25, 6, 114  # BuiltinOperator values


def metadata_entries(data: bytes) -> dict[str, bytes]:
    """The model's ``metadata`` table: {name: the bytes of the buffer it points at}.

    Raises:
        Malformed: the flatbuffer is damaged, or an entry points outside the buffers or the file.
    """
    model = walk(data)[0]
    buffers: list = model.get(4, [])  # type: ignore[assignment]
    found: dict[str, bytes] = {}
    for entry in model.get(6, []):  # type: ignore[union-attr]
        name = bytes(entry.get(0, b"")).decode("utf-8", "replace")
        index = entry.get(1, 0)
        if not 0 <= index < len(buffers):
            raise Malformed(f"metadata {name!r} points at buffer {index} of {len(buffers)}")
        buf = buffers[index]
        if 0 in buf:  # the usual case: the bytes are a vector inside the flatbuffer
            start, length = buf[0]
        else:  # a model past 2 GB keeps buffers after the flatbuffer: (offset, size)
            start, length = buf.get(1, 0), buf.get(2, 0)
            if start + length > len(data):
                raise Malformed(f"metadata {name!r} points at bytes {start}..{start + length}, past the end")
        found[name] = data[start:start + length]
    return found


def output_is_softmax(data: bytes) -> bool:
    """True when the first subgraph's first output comes out of a SOFTMAX (through any (de)quantize at the
    interface): the model gives probabilities. False for logits, or when the bytes cannot be read."""
    try:
        model = walk(data)[0]
        graph = model[2][0]  # type: ignore[index]
        codes = [max(c.get(3, 0), signed8(c.get(0, 0))) for c in model.get(1, [])]  # type: ignore[union-attr]
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
    except (Malformed, KeyError, IndexError, TypeError):
        return False
    return False

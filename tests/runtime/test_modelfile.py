"""Two readers of the .tflite format must agree: the runtime's bounds-checked walker (``runtime/modelfile.py``, pure
Python, works with tflite-runtime too) and the bindings generated from ``schema.fbs`` that ship in ai_edge_litert
(the converters write and inspect models with them). This holds the walker's slot tables equal to the generated
ones, and the two readers' answers equal on real models."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from digitkit.runtime.classifier import DEFAULT_MODEL
from digitkit.runtime.modelfile import SCHEMA, metadata_entries, walk

schema = pytest.importorskip("ai_edge_litert.schema_py_generated")

GENERATED_NAME = {"Quantization": "QuantizationParameters"}  # the walker's name -> the schema's table name
SIZES = {"Bool": 1, "Int8": 1, "Uint8": 1, "Int16": 2, "Uint16": 2, "Int32": 4, "Uint32": 4, "Float32": 4,
         "Int64": 8, "Uint64": 8, "Float64": 8}


def generated_layout(table: str) -> dict[int, str]:
    """{slot: kind} of a generated table class, in the walker's notation, read from the generated accessors."""
    cls = getattr(schema, GENERATED_NAME.get(table, table))
    layout: dict[int, str | int] = {}
    for name, fn in vars(cls).items():
        if not callable(fn) or name.startswith(("_", "Init", "GetRoot")) or name.endswith(
                ("Length", "IsNone", "AsNumpy", "AsNestedFlatbuffer")):
            continue
        src = inspect.getsource(fn)
        offset = re.search(r"self\._tab\.Offset\((\d+)\)", src)
        if not offset:
            continue
        slot = (int(offset[1]) - 4) // 2
        flags = re.search(r"number_types\.(?!UOffsetT)(\w+)Flags", src)
        if "self._tab.Union" in src:
            kind: str | int = "opt"
        elif "self._tab.String" in src:
            kind = "s"
        elif "self._tab.Vector(" in src and "Indirect" in src:
            kind = "vt"
        elif "self._tab.Vector(" in src and flags:
            kind = "vf" if flags[1] == "Float32" else f"v:{SIZES[flags[1]]}"
        elif "Indirect" in src:
            kind = "t"
        else:
            assert flags, (table, name)
            kind = SIZES[flags[1]]
        layout[slot] = kind
    return layout  # type: ignore[return-value]


@pytest.mark.parametrize("table", [t for t in SCHEMA if t != "?"])
def test_walker_slots_match_the_generated_schema(table: str) -> None:
    walker = {slot: (kind.split(":")[0] if isinstance(kind, str) and kind.startswith(("t:", "vt:")) else kind)
              for slot, kind in SCHEMA[table].items()}
    generated = generated_layout(table)
    # A union's value is an offset to a table: the walker bounds-checks the ones it does not interpret
    # (BuiltinOptions2, quantization details) as a table ("t"); only builtin_options is read by its type.
    generated = {slot: "t" if kind == "opt" and walker.get(slot) == "t" else kind for slot, kind in generated.items()}
    assert walker == generated, f"{table}: runtime/modelfile.py SCHEMA {walker} != schema.fbs {generated}"


def test_both_readers_see_the_same_metadata_and_operators(tmp_path: Path) -> None:
    data = DEFAULT_MODEL.read_bytes()
    model = schema.Model.GetRootAsModel(data, 0)
    generated = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        generated[entry.Name().decode()] = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    assert metadata_entries(data) == generated and "digitkit" in generated
    walked = walk(data)[0]
    codes = [max(c.get(3, 0), c.get(0, 0)) for c in walked[1]]  # type: ignore[index, union-attr]
    assert codes == [max(model.OperatorCodes(i).BuiltinCode(), model.OperatorCodes(i).DeprecatedBuiltinCode())
                     for i in range(model.OperatorCodesLength())]
    graph = walked[2][0]  # type: ignore[index]
    assert [op.get(0, 0) for op in graph[3]] == [model.Subgraphs(0).Operators(i).OpcodeIndex()
                                                 for i in range(model.Subgraphs(0).OperatorsLength())]

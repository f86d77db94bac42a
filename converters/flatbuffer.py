"""Read a .tflite flatbuffer without TensorFlow: every operator with the types of its tensors.

Uses the schema bindings that ship inside ``ai_edge_litert``, so this also works where only the runtime is
installed. The converter uses it to prove an int8 model runs no operator in float.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from digitkit.converters.errors import ConversionError

FLOAT_TYPES = frozenset({"FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16"})


@dataclass(frozen=True)
class TensorInfo:
    """One tensor an operator reads or writes."""

    name: str
    dtype: str  # the schema's TensorType name: "INT8", "FLOAT32", ...


@dataclass(frozen=True)
class OpInfo:
    """One operator of the main subgraph, in execution order."""

    index: int
    op: str  # the builtin operator's name: "CONV_2D", "QUANTIZE", ...
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    reads_graph_input: bool
    writes_graph_output: bool

    def float_tensors(self) -> list[TensorInfo]:
        return [t for t in (*self.inputs, *self.outputs) if t.dtype in FLOAT_TYPES]


def embed_metadata(data: bytes, name: str, payload: bytes) -> bytes:
    """``data`` with ``payload`` stored under ``name`` in the model's ``metadata`` table (an entry of that name
    is replaced). The operators, tensors and weights are unchanged; the runtime reads the entry back with
    :func:`digitkit.runtime.modelfile.metadata_entries`.

    Raises:
        ConversionError: the bytes are not a TFLite flatbuffer.
    """
    import flatbuffers
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ConversionError("not a TFLite flatbuffer (missing the TFL3 identifier)")
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(payload, dtype=np.uint8)
    entries = [m for m in (model.metadata or []) if (m.name or b"").decode("utf-8", "replace") != name]
    # A replaced entry's old buffer stays (other indices point past it); it is a few hundred bytes at most.
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata = [*entries, entry]
    builder = flatbuffers.Builder(len(data) + len(payload) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _enum_names(cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def read_ops(data: bytes) -> list[OpInfo]:
    """The operators of the model's first subgraph with their tensors' types.

    Raises:
        ConversionError: the bytes are not a TFLite flatbuffer.
    """
    from ai_edge_litert import schema_py_generated as schema

    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ConversionError("not a TFLite flatbuffer (missing the TFL3 identifier)")
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)
    model = schema.Model.GetRootAsModel(data, 0)
    graph = model.Subgraphs(0)
    graph_inputs = set(graph.InputsAsNumpy().tolist())
    graph_outputs = set(graph.OutputsAsNumpy().tolist())

    def tensor(i: int) -> TensorInfo:
        t = graph.Tensors(i)
        return TensorInfo((t.Name() or b"").decode("utf-8", "replace"), type_names.get(t.Type(), str(t.Type())))

    ops: list[OpInfo] = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        # Codes above 127 live in BuiltinCode; older files only fill the deprecated int8 field.
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        ins = [j for j in op.InputsAsNumpy().tolist() if j >= 0]
        outs = [j for j in op.OutputsAsNumpy().tolist() if j >= 0]
        ops.append(OpInfo(
            index=i, op=op_names.get(builtin, f"BUILTIN_{builtin}"),
            inputs=tuple(tensor(j) for j in ins), outputs=tuple(tensor(j) for j in outs),
            reads_graph_input=bool(graph_inputs.intersection(ins)),
            writes_graph_output=bool(graph_outputs.intersection(outs)),
        ))
    return ops


def float_ops(ops: list[OpInfo], float_io: bool = False) -> list[OpInfo]:
    """The operators that read or write a float tensor.

    Args:
        ops: from :func:`read_ops`.
        float_io: the model was asked for float input/output, so the QUANTIZE that reads the graph input
            and the DEQUANTIZE that writes the graph output are the interface, not float compute.
    """
    found = []
    for op in ops:
        if float_io and ((op.op == "QUANTIZE" and op.reads_graph_input)
                         or (op.op == "DEQUANTIZE" and op.writes_graph_output)):
            continue
        if op.float_tensors():
            found.append(op)
    return found


def op_counts(ops: list[OpInfo]) -> dict[str, int]:
    """How many of each operator the model has, e.g. {"CONV_2D": 2, ...}."""
    return dict(Counter(op.op for op in ops))


@dataclass(frozen=True)
class IOInfo:
    """The model's input and output tensor types and the input's quantization (0.0, 0 when float)."""

    input_dtype: str
    input_scale: float
    input_zero_point: int
    output_dtype: str


def read_io(data: bytes) -> IOInfo:
    """Input/output tensor types of the first subgraph, read from the flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    type_names = _enum_names(schema.TensorType)
    graph = schema.Model.GetRootAsModel(data, 0).Subgraphs(0)
    t_in = graph.Tensors(int(graph.Inputs(0)))
    t_out = graph.Tensors(int(graph.Outputs(0)))
    quant = t_in.Quantization()
    scale = float(quant.Scale(0)) if quant is not None and quant.ScaleLength() else 0.0
    zero = int(quant.ZeroPoint(0)) if quant is not None and quant.ZeroPointLength() else 0
    return IOInfo(type_names.get(t_in.Type(), "?"), scale, zero, type_names.get(t_out.Type(), "?"))

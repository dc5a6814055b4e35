"""Reading and annotating `.tflite` files through the TFLite flatbuffer schema.

The schema's generated Python module is the public description of the file format; LiteRT ships
it as `ai_edge_litert.schema_py_generated` (its `tools.flatbuffer_utils` builds on it). Reading
the ops from the file replaces the interpreter's private `_get_ops_details`, and it sees the
graph as converted, before any delegate folds ops into DELEGATE nodes.

Every import of a schema module is in `schema()`; `tests/test_export.py` checks each candidate.
"""

from __future__ import annotations

import importlib
import typing

import flatbuffers
import numpy as np

# The first that imports is used. TensorFlow's converter carries the same generated module,
# under a non-public path: the route for installs without LiteRT (an optional dependency).
SCHEMA_MODULES = (
    "ai_edge_litert.schema_py_generated",
    "tensorflow.lite.python.schema_py_generated",
)
_FILE_IDENTIFIER = b"TFL3"


class TFLiteOp(typing.NamedTuple):
    """One op of a `.tflite` file: its name (`"CONV_2D"`, or a custom op's code such as
    `"FlexCumprod"`) and the dtype names (`"float32"`, `"int8"`, ...) of its tensors."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def schema(module_name=None):
    """The TFLite flatbuffer schema module: `module_name`, or the first of `SCHEMA_MODULES`
    that imports."""
    names = SCHEMA_MODULES if module_name is None else (module_name,)
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError(
        "Reading .tflite files needs the TFLite flatbuffer schema, shipped with LiteRT: "
        "pip install ai-edge-litert (or keras_recalib[lite])."
    )


def _model(content, fb):
    if not fb.Model.ModelBufferHasIdentifier(content, 0):
        raise ValueError(
            "Expected a TFLite flatbuffer (file identifier TFL3). "
            f"Received: content starting with {bytes(content[:8])!r}"
        )
    return fb.Model.GetRootAs(content, 0)


def _names(enum_class):
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_")}


def read_ops(content, module_name=None):
    """Every op of a TFLite flatbuffer, subgraph by subgraph (the main graph first), in
    execution order, as `TFLiteOp`s."""
    fb = schema(module_name)
    model = _model(content, fb)
    builtin_names = _names(fb.BuiltinOperator)
    type_names = {code: name.lower() for code, name in _names(fb.TensorType).items()}
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        # Codes above 127 live in `builtin_code`; older files only fill the deprecated int8.
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == fb.BuiltinOperator.CUSTOM:
            codes.append(code.CustomCode().decode("utf-8"))
        else:
            codes.append(builtin_names[builtin])
    ops = []
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)

        def dtypes(indices, graph=graph):
            # -1 marks an omitted optional input.
            return tuple(type_names[graph.Tensors(i).Type()] for i in indices if i >= 0)

        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            inputs = [op.Inputs(j) for j in range(op.InputsLength())]
            outputs = [op.Outputs(j) for j in range(op.OutputsLength())]
            ops.append(TFLiteOp(codes[op.OpcodeIndex()], dtypes(inputs), dtypes(outputs)))
    return ops


def read_metadata(content, name, module_name=None):
    """The bytes of the metadata entry `name` of a TFLite flatbuffer, or None."""
    fb = schema(module_name)
    model = _model(content, fb)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() is not None and entry.Name().decode("utf-8") == name:
            data = model.Buffers(entry.Buffer()).DataAsNumpy()
            return b"" if isinstance(data, int) else data.tobytes()
    return None


def with_metadata(content, name, value, module_name=None):
    """A copy of a TFLite flatbuffer with the metadata entry `name` set to the bytes `value`.

    The file is unpacked and packed again through the schema's object API, which is how the
    TensorFlow converter itself adds its conversion metadata to every file it writes.
    """
    fb = schema(module_name)
    _model(content, fb)
    model = fb.ModelT.InitFromPackedBuf(bytearray(content), 0)
    buffer = fb.BufferT()
    buffer.data = np.frombuffer(value, np.uint8)
    model.buffers = [*(model.buffers or []), buffer]
    entry = fb.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    kept = [m for m in (model.metadata or []) if m.name.decode("utf-8") != name]
    model.metadata = [*kept, entry]
    builder = flatbuffers.Builder(len(content) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=_FILE_IDENTIFIER)
    return bytes(builder.Output())

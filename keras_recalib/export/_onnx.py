"""ONNX export and verification of the file in ONNX Runtime, reported like a `.tflite` file.

On the TensorFlow backend the export is Keras' own `model.export(format="onnx")` (tf2onnx). On
the PyTorch backend it is the route Keras takes for fully known shapes: `torch.onnx.export`
with `dynamo=True` (torch.export, then onnxscript's translation), called here directly so that
one translation can be corrected (`_squeeze_only_size_one`). Keras would fall back to the
TorchScript exporter for a dynamic batch, which cannot export SRM, SimAM, SCConv or a local
Gather-Excite (Python scalars from tensors, `aten::ravel`); torch.export itself specialises a
Keras model's batch, so on PyTorch the file's shape is fixed. The JAX backend (Keras' jax2onnx
route) is refused with a clear error.

The packages are optional (`pip install "keras_recalib[onnx]"`: onnx, onnxruntime, tf2onnx,
and onnxscript for PyTorch) and imported only when a function here runs.

tf2onnx's graph optimizer has a bug that the package's own layers trigger, fixed here for the
duration of an export (`_reshape_folds_keep_dimensions`); it is the only use of tf2onnx
internals, and `tests/test_onnx.py` fails when they move or when tf2onnx fixes the bug.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import io
import logging
import os
import pathlib
import warnings

import keras
import numpy as np

from keras_recalib._quantization import get_spec
from keras_recalib.export._convert import _check_model, _input_signature
from keras_recalib.export._verify import (
    VerificationReport,
    check_inputs,
    check_repeats,
    compare_outputs,
    median_latency_ms,
)

_INSTALL = 'pip install "keras_recalib[onnx]" (onnx, onnxruntime, tf2onnx, onnxscript)'
# `model.export(format="onnx")` first shipped in Keras 3.8.
_MIN_KERAS = (3, 8)
# torch.onnx's dynamo exporter writes opset 18 (its function library's) or newer.
_MIN_TORCH_OPSET = 18


def _require(purpose, *modules):
    """Imports `modules`; a ValueError naming every one that is missing and the extra."""
    found, missing = [], []
    for module in modules:
        try:
            found.append(importlib.import_module(module))
        except ImportError:
            missing.append(f"`{module}`")
    if missing:
        raise ValueError(
            f"{purpose} needs the optional {'packages' if len(missing) > 1 else 'package'} "
            f"{', '.join(missing)}, not installed. Install the `onnx` extra: {_INSTALL}."
        )
    return found[0] if len(found) == 1 else found


def _check_onnx_path(argument, path):
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(
            f"Argument `{argument}` must be a path (str or os.PathLike). "
            f"Received: {argument}={path!r}"
        )
    path = pathlib.Path(path)
    if path.suffix != ".onnx":
        raise ValueError(
            f"Argument `{argument}` must name a `.onnx` file. Received: {argument}={str(path)!r}"
        )
    return path


def _check_opset(opset):
    if opset is None:
        return None
    if keras.backend.backend() == "torch":
        import onnx

        known, writer = range(_MIN_TORCH_OPSET, onnx.defs.onnx_opset_version() + 1), "torch.onnx"
    else:
        from tf2onnx import constants

        known, writer = constants.OPSET_TO_IR_VERSION, "tf2onnx"
    if isinstance(opset, bool) or not isinstance(opset, int) or opset not in known:
        raise ValueError(
            f"Argument `opset` must be None ({writer}'s default) or an ONNX opset {writer} can "
            f"write, {min(known)} to {max(known)}. Received: opset={opset!r}"
        )
    return opset


def _squeeze_only_size_one(self, dim: int):
    """`aten::squeeze.dim` as PyTorch defines it: a no-op when the dimension is not 1.

    onnxscript 0.7 translates it to an ONNX Squeeze unconditionally, which ONNX Runtime refuses
    to load for a dimension other than 1. Keras' `take` on PyTorch calls `squeeze(axis)` after
    `index_select` whatever the size, so every gather (SCConv's and Gather-Excite's resizing)
    meets it. Traced at export, where the static shape is known.
    """
    from onnxscript import opset18 as op

    shape = self.shape
    if shape is not None and isinstance(shape[dim], int) and shape[dim] != 1:
        return op.Identity(self)
    return op.Squeeze(self, op.Constant(value_ints=[dim]))


def _export_torch(model, path, specs, opset, input_shape):
    """`model` to `path` with torch.onnx's dynamo exporter, at the fixed shape of `specs`
    with `input_shape`'s batch (1 without one)."""
    if len(specs) != 1:
        raise ValueError(
            "ONNX export on the PyTorch backend handles single-input models. "
            f"Received: model={model.name!r} (with {len(specs)} inputs)"
        )
    (spec,) = specs
    shape = tuple(spec.shape)
    if any(d is None for d in shape[1:]):
        raise ValueError(
            "ONNX export on the PyTorch backend needs a fixed spatial size (torch.export "
            "specialises the shapes of a Keras model); pass `input_shape`. "
            f"Received: input_shape={input_shape!r} (the model's inputs are {shape})"
        )
    import torch

    batch = input_shape[0] if input_shape is not None and len(input_shape) == 4 else None
    device = model.weights[0].value.device if model.weights else "cpu"
    sample = torch.zeros(
        (batch or 1, *shape[1:]), dtype=getattr(torch, spec.dtype.name), device=device
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings(), _quiet_torch_onnx():
            # torch.export's own notes on Keras' Python-side state; nothing to act on.
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model,
                (sample,),
                dynamo=True,
                input_names=[spec.name],
                opset_version=opset,
                custom_translation_table={torch.ops.aten.squeeze.dim: _squeeze_only_size_one},
                verbose=False,
            )
            program.optimize()
            program.save(str(path))
    finally:
        model.train(was_training)


@contextlib.contextmanager
def _quiet_torch_onnx():
    """torch.onnx logs each of its steps at INFO and prints a summary line per step."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _reshape_folds_keep_dimensions():
    """Lets tf2onnx fold `Reshape(Reshape(x, a), b)` into `Reshape(x, b)` only when `b` is a
    constant without a 0.

    In an ONNX Reshape (allowzero=0, what tf2onnx writes) a 0 copies that dimension from the
    reshape's own input, so after the fold it copies x's dimension instead of the intermediate
    one: a wrong shape, or wrong numbers where the sizes happen to agree. tf2onnx writes such
    0s for dynamic sizes (its reshape optimizer) and turns transposes that move a size-1 axis
    into reshapes; Triplet Attention's rotated planes, exported with a dynamic spatial size,
    meet exactly that pattern. A computed `b` is not folded either, since it may hold a 0 at
    run time; every other optimization stays. tf2onnx 1.17 keeps the folds by input op type in
    `back_to_back_optimizer._func_map`; the guard is installed for one export and removed
    after it (Keras also patches tf2onnx, for NumPy 2, in `keras.src.export.tf2onnx_lib`).
    """
    from tf2onnx.optimizer import back_to_back_optimizer

    folds = back_to_back_optimizer._func_map
    key = ("Reshape",)
    fold = folds.get(key)
    if fold is None:  # tf2onnx reorganised; tests/test_onnx.py says so
        yield
        return

    def guarded(graph, node, consumers):
        if len(consumers) == 1 and consumers[0].type == "Reshape":
            shape = consumers[0].inputs[1]
            if not shape.is_const() or 0 in np.asarray(shape.get_tensor_value(as_list=False)):
                return []
        return fold(graph, node, consumers)

    folds[key] = guarded
    try:
        yield
    finally:
        folds[key] = fold


@contextlib.contextmanager
def _quiet_tf2onnx():
    """tf2onnx logs every conversion step, and Keras' NumPy 2 patch of tf2onnx probes the
    deprecated `np.object`, which NumPy answers with a FutureWarning."""
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*np.object.*", category=FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def export_onnx(
    model,
    path: str | os.PathLike,
    input_shape: tuple | None = None,
    opset: int | None = None,
) -> pathlib.Path:
    """Writes `model` as an ONNX file.

    On the TensorFlow backend Keras' `model.export(format="onnx")` converts the model's
    inference function with tf2onnx: the file computes in the model's dtypes (float32, or
    float16 inside under a mixed-precision policy); its batch size is dynamic, and its spatial
    size is what the model's inputs declare (dynamic when they were built with `None`) unless
    `input_shape` fixes it.

    On the PyTorch backend torch.onnx's dynamo exporter writes the file (Keras' route for fixed
    shapes, see the module docstring), for a fixed input shape: `input_shape` or the model's
    declared one, with a batch of `input_shape[0]` or 1. Float32 models, single input.

    The JAX backend is refused. Needs the `onnx` extra (`pip install "keras_recalib[onnx]"`).

    Args:
        model: a built `keras.Model`.
        path: output file; must end in `.onnx`. Missing parent folders are created.
        input_shape: optional `(height, width, channels)` or `(batch, height, width, channels)`
            (on TensorFlow the batch entry is ignored: it stays dynamic; on PyTorch it fixes
            the file's batch, 1 when left out or None); single-input models only.
        opset: the ONNX opset (of the default `ai.onnx` domain) to write. Defaults to `None`:
            the exporter's default (15 for tf2onnx 1.17, 20 for torch 2.13).

    Returns:
        The path, as a `pathlib.Path`.

    Raises:
        ValueError: bad arguments, or the `onnx` extra not installed.
        NotImplementedError: on the JAX backend.
    """
    backend = keras.backend.backend()
    if backend not in ("tensorflow", "torch"):
        raise NotImplementedError(
            f"ONNX export runs on the TensorFlow and PyTorch backends, not on {backend} "
            f"(KERAS_BACKEND={backend}): Keras' route there (jax2onnx) is not part of the "
            "`onnx` extra nor tested with these layers. Save the model (`model.save`) and "
            "export the .keras file under KERAS_BACKEND=tensorflow or torch."
        )
    _check_model(model)
    path = _check_onnx_path("path", path)
    if path.is_dir():
        raise ValueError(f"Argument `path` is a folder, not a file. Received: path={str(path)!r}")
    specs = _input_signature(model, input_shape)
    if tuple(int(part) for part in keras.version().split(".")[:2]) < _MIN_KERAS:
        raise ValueError(
            "ONNX export goes through model.export(format='onnx'), which needs Keras 3.8 or "
            f"newer; this is Keras {keras.version()}. Install the `onnx` extra: {_INSTALL}."
        )
    if backend == "torch":
        _require("ONNX export on the PyTorch backend", "onnx", "onnxscript")
        opset = _check_opset(opset)
        _export_torch(model, path, specs, opset, input_shape)
        return path
    _require("ONNX export", "onnx", "tf2onnx")
    opset = _check_opset(opset)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keras calls a multi-input model with one argument, the list of its inputs.
    signature = specs if len(specs) == 1 else [specs]
    with _reshape_folds_keep_dimensions(), _quiet_tf2onnx():
        model.export(
            str(path), format="onnx", verbose=False, input_signature=signature, opset_version=opset
        )
    return path


def onnx_opset(onnx_path: str | os.PathLike) -> int:
    """The default-domain ONNX opset an `.onnx` file was written for."""
    return _opset(_load(_check_onnx_path("onnx_path", onnx_path)))


def onnx_ops(onnx_path: str | os.PathLike) -> dict[str, int]:
    """How many nodes of each ONNX op type an `.onnx` file holds (subgraphs included)."""
    return _op_counts(_load(_check_onnx_path("onnx_path", onnx_path)).graph)


def _load(path):
    onnx = _require("Reading an ONNX file", "onnx")
    if not path.is_file():
        raise ValueError(f"No such ONNX file. Received: onnx_path={str(path)!r}")
    try:
        return onnx.load(str(path))
    except Exception as error:  # a protobuf DecodeError, not exported by onnx
        raise ValueError(
            f"The file is not an ONNX model ({type(error).__name__}). "
            f"Received: onnx_path={str(path)!r}"
        ) from None


def _opset(proto):
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def _op_counts(graph):
    counts = collections.Counter()
    for node in graph.node:
        counts[node.op_type] += 1
        for attribute in node.attribute:  # If / Loop bodies
            for subgraph in (
                *attribute.graphs,
                *([attribute.g] if attribute.HasField("g") else []),
            ):
                counts.update(_op_counts(subgraph))
    return dict(counts)


def verify_onnx(
    model, onnx_path: str | os.PathLike, inputs, repeats: int = 20
) -> VerificationReport:
    """Runs an `.onnx` file in ONNX Runtime (CPU) and compares it with `model`.

    The file is checked as `export_onnx` writes it, in float32: the report's quantization is
    `"none"` and `meets_contract` asks for that mode's cosine similarity.

    Args:
        model: the Keras model the file was exported from (single input, single output).
        onnx_path: the `.onnx` file.
        inputs: float array `(N, ...)` of inputs; for a file with a fixed batch (exported on
            PyTorch), N must be a multiple of it.
        repeats: runs of a batch-1 inference (of the fixed batch, where the file has one)
            for the median latency.

    Returns:
        A `VerificationReport` (`format="onnx"`, with the file's `opset`): max absolute error,
        cosine similarity, top-1 agreement (for outputs of shape (N, classes)), the count of
        each ONNX op type, file size, median latency and `meets_contract`.

    Raises:
        ValueError: bad arguments, a file that is not ONNX, or the `onnx` extra not installed.
    """
    inputs = check_inputs(inputs)
    check_repeats(repeats)
    path = _check_onnx_path("onnx_path", onnx_path)
    onnx, onnxruntime = _require("ONNX verification", "onnx", "onnxruntime")
    proto = _load(path)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = session.get_inputs()
    if len(feeds) != 1:
        raise ValueError(
            "verify_onnx compares single-input models. "
            f"Received: onnx_path={str(path)!r} (the file has {len(feeds)} inputs)"
        )
    name = feeds[0].name
    (declared,) = (i for i in proto.graph.input if i.name == name)
    batch_dim = declared.type.tensor_type.shape.dim[0]
    # A file exported on PyTorch has a fixed batch: it runs the inputs that many at a time.
    batch = batch_dim.dim_value if batch_dim.HasField("dim_value") else None
    if batch is not None and len(inputs) % batch:
        raise ValueError(
            f"The file takes batches of exactly {batch} samples; pass a multiple of {batch}. "
            f"Received: inputs=<array of shape {inputs.shape}>"
        )
    step = batch or len(inputs)
    actual = np.concatenate(
        [session.run(None, {name: inputs[i : i + step]})[0] for i in range(0, len(inputs), step)]
    )
    expected = keras.ops.convert_to_numpy(model(inputs, training=False)).astype(np.float32)
    max_abs_error, cosine, top1 = compare_outputs(actual, expected)
    spec = get_spec("none")
    first = inputs[: batch or 1]
    session.run(None, {name: first})  # the first run at a shape plans its memory
    input_dtype = onnx.helper.tensor_dtype_to_np_dtype(declared.type.tensor_type.elem_type)
    return VerificationReport(
        path=str(path),
        file_size_bytes=path.stat().st_size,
        max_abs_error=max_abs_error,
        cosine_similarity=cosine,
        top1_agreement=top1,
        op_counts=_op_counts(proto.graph),
        float_ops=[],
        median_latency_ms=median_latency_ms(lambda: session.run(None, {name: first}), repeats),
        input_dtype=input_dtype.name,
        quantization=spec.name,
        min_cosine=spec.min_cosine,
        format="onnx",
        opset=_opset(proto),
    )

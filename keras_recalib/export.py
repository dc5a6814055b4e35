"""Deployment: SavedModel export, TFLite conversion (float32, float16, dynamic-range, int8) and
verification of the converted file in the LiteRT interpreter.

Conversion goes through a SavedModel, the route Keras 3 recommends, with TFLite built-in ops
only: a model that would need `SELECT_TF_OPS` (Flex) raises `TFLiteConversionError` listing the
offending TensorFlow ops and the layers they come from.
"""

import contextlib
import dataclasses
import os
import pathlib
import re
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

__all__ = [
    "QUANTIZATIONS",
    "TFLiteConversionError",
    "VerificationReport",
    "convert_tflite",
    "export_saved_model",
    "run_tflite",
    "verify_tflite",
]

QUANTIZATIONS = (None, "float16", "dynamic", "int8")
_IO_TYPES = {"float32": tf.float32, "int8": tf.int8, "uint8": tf.uint8}
# Ops whose tensors are expected to be float in an otherwise int8 model.
_BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE"}


class TFLiteConversionError(ValueError):
    """The model needs TensorFlow ops that TFLite has no built-in kernel for.

    Attributes:
        ops: names of the TensorFlow ops that would need `SELECT_TF_OPS`.
        layers: names of the model's layers those ops come from (when they could be traced).
    """

    def __init__(self, message, ops=(), layers=()):
        super().__init__(message)
        self.ops = list(ops)
        self.layers = list(layers)


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise ValueError(f"Expected a keras.Model. Received: model={model!r}")
    if not model.built or not model.inputs:
        raise ValueError(
            "The model has no defined inputs; build a functional model or call the model on "
            f"data first. Received: model={model.name!r}"
        )


def _input_signature(model, input_shape):
    """TensorSpecs for the model's inputs: dynamic batch; spatial size as declared or fixed."""
    inputs = model.inputs
    if input_shape is not None:
        if len(inputs) != 1:
            raise ValueError(
                "`input_shape` applies to single-input models only. "
                f"Received: input_shape={input_shape!r} for {len(inputs)} inputs"
            )
        shape = tuple(input_shape)
        rank = len(inputs[0].shape)
        if len(shape) == rank - 1:
            shape = (None, *shape)
        if len(shape) != rank or any(
            d is not None and (not isinstance(d, int) or d < 1) for d in shape
        ):
            raise ValueError(
                f"Argument `input_shape` must have {rank - 1} or {rank} positive ints or None. "
                f"Received: input_shape={input_shape!r}"
            )
        return [tf.TensorSpec((None, *shape[1:]), inputs[0].dtype, name=_input_name(inputs[0]))]
    return [tf.TensorSpec((None, *t.shape[1:]), t.dtype, name=_input_name(t)) for t in inputs]


def _input_name(tensor):
    return re.sub(r"\W", "_", getattr(tensor, "name", "inputs") or "inputs")


def export_saved_model(model, path, input_shape=None):
    """Writes `model` as a SavedModel with a `serving_default` signature.

    The batch size is dynamic. The spatial size is what the model's inputs declare (dynamic when
    they were built with `None`) unless `input_shape` fixes it.

    Args:
        model: a built `keras.Model`.
        path: output folder.
        input_shape: optional `(height, width, channels)` or `(batch, height, width, channels)`
            (the batch entry is ignored: it stays dynamic).

    Returns:
        The path, as a `pathlib.Path`.
    """
    _check_model(model)
    specs = _input_signature(model, input_shape)
    path = pathlib.Path(path)
    archive = keras.export.ExportArchive()
    archive.track(model)

    if len(specs) == 1:

        def serve(inputs):
            return model(inputs, training=False)

    else:

        def serve(*inputs):
            return model(list(inputs), training=False)

    archive.add_endpoint(name="serve", fn=serve, input_signature=specs)
    archive.write_out(str(path), verbose=False)
    return path


@contextlib.contextmanager
def quiet_native_stderr():
    """Silences what TensorFlow's C++ side prints to file descriptor 2 (converter diagnostics),
    keeping it for error messages."""
    captured = tempfile.TemporaryFile(mode="w+b")
    try:
        saved = os.dup(2)
    except OSError:  # no real stderr (some notebooks)
        yield captured
        return
    try:
        os.dup2(captured.fileno(), 2)
        yield captured
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _representative_dataset(representative_data, limit=256):
    if representative_data is None:
        raise ValueError(
            "Full-integer quantization needs calibration data: pass `representative_data` "
            "(an array of shape (N, ...), or an iterable of input batches). "
            "Received: representative_data=None"
        )
    if isinstance(representative_data, (np.ndarray, tf.Tensor)):
        array = np.asarray(representative_data, np.float32)
        if array.ndim < 2 or len(array) == 0:
            raise ValueError(
                "Argument `representative_data` must hold at least one sample with a batch axis. "
                f"Received: representative_data with shape {array.shape}"
            )

        def generate():
            for i in range(min(len(array), limit)):
                yield [array[i : i + 1]]

        return generate

    def generate_batches():
        count = 0
        for batch in representative_data:
            batch = np.asarray(batch[0] if isinstance(batch, (tuple, list)) else batch, np.float32)
            for i in range(len(batch)):
                yield [batch[i : i + 1]]
                count += 1
                if count >= limit:
                    return

    return generate_batches


def _flex_error(message, model):
    ops = re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", message)
    listed = re.search(r"TF Select ops: ([\w, ]+)", message)
    if listed:
        ops += [op.strip() for op in listed.group(1).split(",")]
    ops = sorted(set(ops))
    layer_names = {layer.name for layer in model.layers} if model is not None else set()
    layers = set()
    for op in ops:
        for path in re.findall(rf'fused\["{op}:", "([^"@]+)@', message):
            for part in path.split("/"):
                for candidate in (part, re.sub(r"_\d+$", "", part)):
                    if candidate in layer_names:
                        layers.add(candidate)
    where = f" in layers {', '.join(sorted(layers))}" if layers else ""
    return TFLiteConversionError(
        "The model needs TensorFlow ops that TFLite's built-in op set lacks (they would need "
        f"SELECT_TF_OPS / Flex): {', '.join(ops)}{where}. Replace those operations with "
        "built-in ones. Received: ops=" + ",".join(ops),
        ops=ops,
        layers=sorted(layers),
    )


def convert_tflite(
    model,
    path,
    quantization=None,
    representative_data=None,
    input_shape=None,
    inference_input_type="float32",
    inference_output_type="float32",
):
    """Converts `model` to a `.tflite` file through a SavedModel, built-in ops only.

    Args:
        model: a built `keras.Model`, or the path of a SavedModel folder.
        path: output `.tflite` file.
        quantization: `None` (float32), `"float16"` (float16 weights), `"dynamic"` (int8
            weights, dynamic-range activations) or `"int8"` (full integer: every op in int8,
            calibrated on `representative_data`).
        representative_data: calibration inputs for `"int8"`: an array `(N, ...)` or an
            iterable of batches (at most 256 samples are used).
        input_shape: optional fixed `(height, width, channels)` for the export.
        inference_input_type, inference_output_type: `"float32"` (default: the model quantizes
            and dequantizes at its boundaries) or `"int8"`/`"uint8"`; only with `"int8"`.

    Returns:
        The path, as a `pathlib.Path`.

    Raises:
        ValueError: bad arguments.
        TFLiteConversionError: the model needs ops outside TFLite's built-in set.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            "Argument `quantization` must be one of None, 'float16', 'dynamic', 'int8'. "
            f"Received: quantization={quantization!r}"
        )
    for name, value in (
        ("inference_input_type", inference_input_type),
        ("inference_output_type", inference_output_type),
    ):
        if value not in _IO_TYPES:
            raise ValueError(
                f"Argument `{name}` must be one of {', '.join(_IO_TYPES)}. "
                f"Received: {name}={value!r}"
            )
        if value != "float32" and quantization != "int8":
            raise ValueError(
                f"Argument `{name}` can be integer only with quantization='int8'. "
                f"Received: {name}={value!r}, quantization={quantization!r}"
            )
    path = pathlib.Path(path)
    with tempfile.TemporaryDirectory(prefix="keras_recalib_export_") as tmp:
        if isinstance(model, (str, os.PathLike)):
            saved_model, keras_model = str(model), None
        else:
            saved_model = str(
                export_saved_model(model, pathlib.Path(tmp) / "saved_model", input_shape)
            )
            keras_model = model
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantization is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif quantization == "int8":
            converter.representative_dataset = _representative_dataset(representative_data)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = _IO_TYPES[inference_input_type]
            converter.inference_output_type = _IO_TYPES[inference_output_type]
        with quiet_native_stderr() as log:
            try:
                flatbuffer = converter.convert()
            except Exception as error:  # the converter raises ConverterError, not exported
                log.seek(0)
                message = str(error) + "\n" + log.read().decode("utf-8", "replace")
                if "flex op" in message or "TF Select ops" in message:
                    raise _flex_error(message, keras_model) from None
                raise
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(flatbuffer)
    return path


def _interpreter_module():
    try:
        from ai_edge_litert import interpreter

        return interpreter
    except ImportError:  # fallback only: tf.lite.Interpreter is deprecated
        return tf.lite


def _interpreter(path, delegates=True):
    module = _interpreter_module()
    kwargs = {"model_path": str(path)}
    if not delegates:
        # Op inspection needs the plain graph: XNNPACK would fold ops into DELEGATE nodes.
        resolver = getattr(module, "OpResolverType", None) or module.experimental.OpResolverType
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return module.Interpreter(**kwargs)


def tflite_ops(path):
    """(op name, input dtypes, output dtypes) for every op of a `.tflite` file, undelegated."""
    interpreter = _interpreter(path, delegates=False)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}

    def dtypes(indices):
        return [np.dtype(tensors[i]["dtype"]).name for i in indices if i >= 0 and i in tensors]

    return [
        (op["op_name"], dtypes(op["inputs"]), dtypes(op["outputs"]))
        for op in interpreter._get_ops_details()
    ]


def _run(interpreter, x):
    """Runs one batch through an allocated-on-demand interpreter, (de)quantizing at the edges."""
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], list(x.shape), strict=False)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    if detail["dtype"] != np.float32:
        scale, zero = detail["quantization"]
        info = np.iinfo(detail["dtype"])
        x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(detail["dtype"])
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    out = interpreter.get_output_details()[0]
    y = interpreter.get_tensor(out["index"])
    if out["dtype"] != np.float32:
        scale, zero = out["quantization"]
        y = (y.astype(np.float32) - zero) * scale
    return y


def run_tflite(tflite_path, inputs):
    """Runs a `.tflite` file on a batch `inputs` in the LiteRT interpreter.

    Integer-input files get the inputs quantized with the file's own scale and zero point;
    integer outputs come back dequantized, so the result is always float32.
    """
    return _run(_interpreter(tflite_path), np.asarray(inputs, np.float32)).astype(np.float32)


@dataclasses.dataclass
class VerificationReport:
    """How a `.tflite` file compares with the Keras model it came from."""

    path: str
    file_size_bytes: int
    max_abs_error: float
    cosine_similarity: float
    top1_agreement: float | None
    op_counts: dict
    float_ops: list
    median_latency_ms: float
    input_dtype: str

    @property
    def fully_int8(self):
        """True when every op between the input quantize and output dequantize runs in int8."""
        return not self.float_ops

    def rows(self):
        top1 = "-" if self.top1_agreement is None else f"{self.top1_agreement:.3f}"
        return [
            ("file", self.path),
            ("size", f"{self.file_size_bytes / 1024:.1f} KiB"),
            ("input dtype", self.input_dtype),
            ("ops", ", ".join(f"{k} x{v}" for k, v in sorted(self.op_counts.items()))),
            ("float ops inside", ", ".join(self.float_ops) or "none"),
            ("max abs error", f"{self.max_abs_error:.3g}"),
            ("cosine similarity", f"{self.cosine_similarity:.6f}"),
            ("top-1 agreement", top1),
            ("median latency", f"{self.median_latency_ms:.3f} ms (batch 1)"),
        ]

    def __str__(self):
        width = max(len(k) for k, _ in self.rows())
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in self.rows())


def verify_tflite(model, tflite_path, inputs, repeats=20):
    """Runs a `.tflite` file in the LiteRT interpreter and compares it with `model`.

    Args:
        model: the Keras model the file was converted from (single input, single output).
        tflite_path: the `.tflite` file.
        inputs: float array `(N, ...)` of inputs; integer-input files get them quantized with
            the file's own scale and zero point, integer outputs are dequantized.
        repeats: runs of a batch-1 inference for the median latency.

    Returns:
        A `VerificationReport`: max absolute error, cosine similarity, top-1 agreement (for
        outputs of shape (N, classes)), op counts by type, float ops left inside a quantized
        model, file size and median latency.
    """
    inputs = np.asarray(inputs, np.float32)
    if inputs.ndim < 2 or len(inputs) == 0:
        raise ValueError(
            "Argument `inputs` must be a non-empty batch of samples. "
            f"Received: inputs with shape {inputs.shape}"
        )
    path = pathlib.Path(tflite_path)
    if not path.is_file():
        raise ValueError(f"No such TFLite file. Received: tflite_path={str(path)!r}")
    expected = np.asarray(model(inputs, training=False), np.float32)
    interpreter = _interpreter(path)
    actual = _run(interpreter, inputs).astype(np.float32)
    a, b = actual.ravel().astype(np.float64), expected.ravel().astype(np.float64)
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    cosine = float(a @ b / denominator) if denominator > 0 else float(np.allclose(a, b))
    top1 = None
    if expected.ndim == 2 and expected.shape[1] > 1:
        top1 = float(np.mean(actual.argmax(1) == expected.argmax(1)))

    ops = tflite_ops(path)
    counts = {}
    float_ops = []
    input_dtype = np.dtype(interpreter.get_input_details()[0]["dtype"]).name
    # Full-integer files start with a QUANTIZE (float input) or take integers directly;
    # float16 and dynamic-range files keep float activations by design.
    quantized = input_dtype != "float32" or any(name == "QUANTIZE" for name, _, _ in ops)
    for name, ins, outs in ops:
        counts[name] = counts.get(name, 0) + 1
        if (
            quantized
            and name not in _BOUNDARY_OPS
            and any(d.startswith("float") for d in ins + outs)
        ):
            float_ops.append(name)

    single = inputs[:1]
    _run(interpreter, single)
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        interpreter.invoke()
        timings.append(time.perf_counter() - start)
    return VerificationReport(
        path=str(path),
        file_size_bytes=path.stat().st_size,
        max_abs_error=float(np.max(np.abs(actual - expected))),
        cosine_similarity=cosine,
        top1_agreement=top1,
        op_counts=counts,
        float_ops=float_ops,
        median_latency_ms=float(np.median(timings) * 1e3),
        input_dtype=input_dtype,
    )

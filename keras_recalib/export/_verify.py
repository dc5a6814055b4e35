"""Running a `.tflite` file in the LiteRT interpreter and checking it against its Keras model,
with the rules of its quantization mode (`keras_recalib._quantization`).

`VerificationReport` and the comparison helpers (`compare_outputs`, `median_latency_ms`) are
also what `verify_onnx` reports with: one report for every exported format."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import time

import numpy as np

from keras_recalib._quantization import QUANTIZATIONS, QuantizationSpec, get_spec
from keras_recalib._table import format_table
from keras_recalib.export import _flatbuffer
from keras_recalib.export._convert import RECORD_NAME


def _interpreter_module():
    try:
        from ai_edge_litert import interpreter

        return interpreter
    except ImportError:  # fallback only: tf.lite.Interpreter is deprecated
        import tensorflow as tf

        return tf.lite


def _interpreter(path):
    return _interpreter_module().Interpreter(model_path=str(path))


def _content(tflite):
    if isinstance(tflite, (bytes, bytearray, memoryview)):
        return bytes(tflite)
    return pathlib.Path(tflite).read_bytes()


def tflite_ops(tflite: str | os.PathLike | bytes) -> list[_flatbuffer.TFLiteOp]:
    """Every op of a `.tflite` file (a path, or the flatbuffer's bytes) as `TFLiteOp`s
    `(name, input dtypes, output dtypes)`, read from the flatbuffer: the graph as converted,
    before any delegate rewrites it."""
    return _flatbuffer.read_ops(_content(tflite))


def recorded_quantization(tflite: str | os.PathLike | bytes) -> str | None:
    """The quantization mode `convert_tflite` recorded in a `.tflite` file (a path, or the
    flatbuffer's bytes), or None for files written by other tools (or by keras_recalib before
    it kept the record)."""
    value = _flatbuffer.read_metadata(_content(tflite), RECORD_NAME)
    return None if value is None else value.decode("utf-8")


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


def run_tflite(tflite_path: str | os.PathLike, inputs) -> np.ndarray:
    """Runs a `.tflite` file on a batch `inputs` in the LiteRT interpreter.

    Integer-input files get the inputs quantized with the file's own scale and zero point;
    integer outputs come back dequantized, so the result is always float32.
    """
    return _run(_interpreter(tflite_path), np.asarray(inputs, np.float32)).astype(np.float32)


def compare_outputs(actual, expected) -> tuple[float, float, float | None]:
    """Max absolute error, cosine similarity and top-1 agreement (for outputs of shape
    (N, classes), else None) of an exported file's outputs against the Keras model's."""
    actual = np.asarray(actual, np.float32)
    expected = np.asarray(expected, np.float32)
    if actual.shape != expected.shape:
        raise ValueError(
            f"The exported file's output has shape {actual.shape}, the Keras model's "
            f"{expected.shape}: the file does not come from this model."
        )
    a, b = actual.ravel().astype(np.float64), expected.ravel().astype(np.float64)
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    cosine = float(a @ b / denominator) if denominator > 0 else float(np.allclose(a, b))
    top1 = None
    if expected.ndim == 2 and expected.shape[1] > 1:
        top1 = float(np.mean(actual.argmax(1) == expected.argmax(1)))
    return float(np.max(np.abs(actual - expected))), cosine, top1


def check_inputs(inputs) -> np.ndarray:
    """`inputs` as a float32 batch; a ValueError unless it is a non-empty batch of samples."""
    inputs = np.asarray(inputs, np.float32)
    if inputs.ndim < 2 or len(inputs) == 0:
        raise ValueError(
            "Argument `inputs` must be a non-empty batch of samples. "
            f"Received: inputs=<array of shape {inputs.shape}>"
        )
    return inputs


def check_repeats(repeats) -> None:
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(
            f"Argument `repeats` must be a positive int. Received: repeats={repeats!r}"
        )


def median_latency_ms(run, repeats: int) -> float:
    """The median wall time of `repeats` calls of `run()`, in milliseconds."""
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        timings.append(time.perf_counter() - start)
    return float(np.median(timings) * 1e3)


@dataclasses.dataclass
class VerificationReport:
    """How an exported file (`.tflite`, or `.onnx` with `format="onnx"`) compares with the
    Keras model it came from, under the rules of its quantization mode (`"none"` for ONNX,
    which is exported in float32)."""

    path: str
    file_size_bytes: int
    max_abs_error: float
    cosine_similarity: float
    top1_agreement: float | None
    op_counts: dict
    float_ops: list
    median_latency_ms: float
    input_dtype: str
    quantization: str
    min_cosine: float
    format: str = "tflite"
    opset: int | None = None

    @property
    def spec(self) -> QuantizationSpec:
        return get_spec(self.quantization)

    @property
    def fully_int8(self) -> bool:
        """True for a full-integer file in which every op between the input QUANTIZE and the
        output DEQUANTIZE runs on integers."""
        return self.spec.integer_inside and not self.float_ops

    @property
    def meets_contract(self) -> bool:
        """True when the file meets its mode's rules: cosine similarity at least `min_cosine`,
        and no float op inside where the mode is integer inside."""
        return self.cosine_similarity >= self.min_cosine and not self.float_ops

    def rows(self) -> list[tuple[str, str]]:
        top1 = "-" if self.top1_agreement is None else f"{self.top1_agreement:.3f}"
        if self.spec.integer_inside:
            float_ops = ", ".join(self.float_ops) or "none"
        else:
            float_ops = "- (float activations by design)"
        inside = ", integer inside" if self.spec.integer_inside else ""
        contract = "met" if self.meets_contract else "NOT met"
        where = self.path if self.format == "tflite" else f"{self.path} (ONNX, opset {self.opset})"
        return [
            ("file", where),
            ("quantization", f"{self.quantization} ({self.spec.summary})"),
            ("size", f"{self.file_size_bytes / 1024:.1f} KiB"),
            ("input dtype", self.input_dtype),
            ("ops", ", ".join(f"{k} x{v}" for k, v in sorted(self.op_counts.items()))),
            ("float ops inside", float_ops),
            ("max abs error", f"{self.max_abs_error:.3g}"),
            ("cosine similarity", f"{self.cosine_similarity:.6f}"),
            ("top-1 agreement", top1),
            ("median latency", f"{self.median_latency_ms:.3f} ms (batch 1)"),
            ("contract", f"{contract} (cosine >= {self.min_cosine}{inside})"),
        ]

    def __str__(self):
        return format_table(("check", "result"), self.rows(), align="ll")


def _resolve_quantization(path, quantization):
    recorded = recorded_quantization(path)
    if quantization is None:
        if recorded is None:
            raise ValueError(
                "The file holds no quantization record (it was not written by "
                "keras_recalib.export.convert_tflite): pass `quantization=` with one of "
                f"{', '.join(map(repr, QUANTIZATIONS))}. Received: quantization=None, "
                f"tflite_path={str(path)!r}"
            )
        return get_spec(recorded)
    spec = get_spec(quantization)
    if recorded is not None and recorded != spec.name:
        raise ValueError(
            f"The file was converted with quantization={recorded!r}. "
            f"Received: quantization={quantization!r}"
        )
    return spec


def verify_tflite(
    model,
    tflite_path: str | os.PathLike,
    inputs,
    repeats: int = 20,
    *,
    quantization: str | None = None,
) -> VerificationReport:
    """Runs a `.tflite` file in the LiteRT interpreter and compares it with `model`.

    Args:
        model: the Keras model the file was converted from (single input, single output).
        tflite_path: the `.tflite` file.
        inputs: float array `(N, ...)` of inputs; integer-input files get them quantized with
            the file's own scale and zero point, integer outputs are dequantized.
        repeats: runs of a batch-1 inference for the median latency.
        quantization: the mode the file was converted with (a name of
            `keras_recalib._quantization.QUANTIZATIONS`). Defaults to `None`: the mode
            `convert_tflite` recorded in the file; a file without that record (written by
            another tool) needs it stated. A stated mode must match the record.

    Returns:
        A `VerificationReport`: max absolute error, cosine similarity, top-1 agreement (for
        outputs of shape (N, classes)), op counts by type, float ops left inside a
        full-integer model, file size, median latency, and whether the file meets its mode's
        contract (`meets_contract`).
    """
    inputs = check_inputs(inputs)
    check_repeats(repeats)
    path = pathlib.Path(tflite_path)
    if not path.is_file():
        raise ValueError(f"No such TFLite file. Received: tflite_path={str(path)!r}")
    spec = _resolve_quantization(path, quantization)
    expected = np.asarray(model(inputs, training=False), np.float32)
    interpreter = _interpreter(path)
    actual = _run(interpreter, inputs).astype(np.float32)
    max_abs_error, cosine, top1 = compare_outputs(actual, expected)

    ops = tflite_ops(path)
    counts = {}
    for op in ops:
        counts[op.name] = counts.get(op.name, 0) + 1

    _run(interpreter, inputs[:1])
    return VerificationReport(
        path=str(path),
        file_size_bytes=path.stat().st_size,
        max_abs_error=max_abs_error,
        cosine_similarity=cosine,
        top1_agreement=top1,
        op_counts=counts,
        float_ops=spec.float_ops_inside(ops),
        median_latency_ms=median_latency_ms(interpreter.invoke, repeats),
        input_dtype=np.dtype(interpreter.get_input_details()[0]["dtype"]).name,
        quantization=spec.name,
        min_cosine=spec.min_cosine,
    )

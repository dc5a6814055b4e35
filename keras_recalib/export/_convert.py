"""SavedModel export and TFLite conversion, with the quantization modes of
`keras_recalib._quantization`.

Conversion goes through a SavedModel, the route Keras 3 recommends, with TFLite built-in ops
only: a model that would need `SELECT_TF_OPS` (Flex) raises `TFLiteConversionError` listing the
offending TensorFlow ops and the layers they come from. Every converted file records its mode in
the flatbuffer's metadata (`RECORD_NAME`), which verification reads back.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import tempfile

import keras
import numpy as np
import tensorflow as tf

from keras_recalib import ops
from keras_recalib._quantization import get_spec
from keras_recalib.export import _flatbuffer

# The metadata entry that holds the quantization mode's name (UTF-8) in every converted file.
RECORD_NAME = "keras_recalib.quantization"
_IO_TYPES = {"float32": tf.float32, "int8": tf.int8, "uint8": tf.uint8}


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
                f"Received: input_shape={input_shape!r} (the model has {len(inputs)} inputs)"
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


def export_saved_model(
    model: keras.Model, path: str | os.PathLike, input_shape: tuple | None = None
) -> pathlib.Path:
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
    if isinstance(representative_data, (np.ndarray, tf.Tensor)):
        array = np.asarray(representative_data, np.float32)
        if array.ndim < 2 or len(array) == 0:
            raise ValueError(
                "Argument `representative_data` must hold at least one sample with a batch axis. "
                f"Received: representative_data={_describe(array)}"
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


def _describe(value):
    """A short form of an argument for error messages (arrays by shape, not by content)."""
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"<{type(value).__name__} of shape {tuple(shape)}>"
    return f"<{type(value).__name__}>"


def convert_tflite(
    model: keras.Model | str | os.PathLike,
    path: str | os.PathLike,
    quantization: str | None = None,
    representative_data=None,
    input_shape: tuple | None = None,
    inference_input_type: str = "float32",
    inference_output_type: str = "float32",
) -> pathlib.Path:
    """Converts `model` to a `.tflite` file through a SavedModel, built-in ops only.

    The file records `quantization` in its metadata, so `verify_tflite` knows which rules to
    apply without being told.

    Args:
        model: a built `keras.Model`, or the path of a SavedModel folder.
        path: output `.tflite` file.
        quantization: a name of `keras_recalib._quantization.QUANTIZATIONS`: `"none"`
            (float32; `None` is accepted for it), `"float16"` (float16 weights), `"dynamic"`
            (int8 weights, dynamic-range activations) or `"int8"` (full integer: every op in
            int8, calibrated on `representative_data`). Defaults to `None`.
        representative_data: calibration inputs, for `"int8"` only (refused otherwise): an
            array `(N, ...)` or an iterable of batches (at most 256 samples are used).
        input_shape: optional fixed `(height, width, channels)` for the export; only with a
            `keras.Model` (a SavedModel's signature already fixes its shapes).
        inference_input_type, inference_output_type: `"float32"` (default: the model quantizes
            and dequantizes at its boundaries) or `"int8"`/`"uint8"`; only with `"int8"`.

    Returns:
        The path, as a `pathlib.Path`.

    Raises:
        ValueError: bad arguments.
        TFLiteConversionError: the model needs ops outside TFLite's built-in set.
    """
    spec = get_spec(quantization)
    if spec.needs_representative_data and representative_data is None:
        raise ValueError(
            f"quantization={spec.name!r} calibrates on sample inputs: pass "
            "`representative_data` (an array of shape (N, ...), or an iterable of input "
            "batches). Received: representative_data=None"
        )
    if not spec.needs_representative_data and representative_data is not None:
        raise ValueError(
            f"Argument `representative_data` is used by calibrated modes only, not by "
            f"quantization={spec.name!r}. "
            f"Received: representative_data={_describe(representative_data)}"
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
        if value != "float32" and not spec.integer_io:
            raise ValueError(
                f"Argument `{name}` can be integer only with quantization='int8'. "
                f"Received: {name}={value!r}, quantization={quantization!r}"
            )
    from_saved_model = isinstance(model, (str, os.PathLike))
    if from_saved_model and input_shape is not None:
        raise ValueError(
            "Argument `input_shape` applies when converting a keras.Model; a SavedModel's "
            "signature already fixes its input shape. Received: "
            f"input_shape={input_shape!r}, model={str(model)!r}"
        )
    path = pathlib.Path(path)
    with tempfile.TemporaryDirectory(prefix="keras_recalib_export_") as tmp:
        if from_saved_model:
            saved_model, keras_model = str(model), None
        else:
            # Traced with the formulations measured fastest in TFLite (keras_recalib.ops).
            runtime = "tflite_int8" if spec.needs_representative_data else "tflite"
            with ops.traced_for(runtime):
                saved_model = str(
                    export_saved_model(model, pathlib.Path(tmp) / "saved_model", input_shape)
                )
            keras_model = model
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
        converter.target_spec.supported_ops = [getattr(tf.lite.OpsSet, spec.op_set)]
        if spec.optimize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if spec.supported_types:
            converter.target_spec.supported_types = [tf.as_dtype(t) for t in spec.supported_types]
        if spec.needs_representative_data:
            converter.representative_dataset = _representative_dataset(representative_data)
        if spec.integer_io:
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
    flatbuffer = _flatbuffer.with_metadata(flatbuffer, RECORD_NAME, spec.name.encode("utf-8"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(flatbuffer)
    return path

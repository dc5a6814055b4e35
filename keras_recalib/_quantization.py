"""The TFLite quantization modes: one specification each, read by conversion
(`keras_recalib.export.convert_tflite`), verification (`keras_recalib.export.verify_tflite`)
and the command line (`keras-recalib export --quantize`).

Plain Python, with neither TensorFlow nor Keras imported: the command line builds its argument
choices from `QUANTIZATIONS`, and every rule of a mode (what conversion needs, how the converter
is set, what the converted file must show) is readable in this one place. The export module maps
the setting names below onto `tf.lite` objects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

# Ops that convert between float and integer tensors at a full-integer model's edges.
BOUNDARY_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})


@dataclasses.dataclass(frozen=True)
class QuantizationSpec:
    """What one quantization mode needs, how the converter is set and what the file must show.

    Attributes:
        name: the mode's name: a key of `QUANTIZATIONS` and the CLI's `--quantize` value.
        summary: one line for help texts and reports.
        needs_representative_data: conversion calibrates activation ranges on sample inputs
            (`representative_data`); the other modes refuse such data instead of ignoring it.
        optimize: the converter runs `tf.lite.Optimize.DEFAULT`.
        supported_types: dtype names for the converter's `target_spec.supported_types`.
        op_set: the name of the `tf.lite.OpsSet` the converter may use.
        integer_io: the file's input and output tensors may be int8 or uint8
            (`inference_input_type`, `inference_output_type`).
        integer_inside: every op between the input QUANTIZE and the output DEQUANTIZE must run
            on integers; False where activations stay float by design (float32, float16
            weights, dynamic range).
        min_cosine: the lowest cosine similarity between the file's outputs and the Keras
            model's that verification accepts.
    """

    name: str
    summary: str
    needs_representative_data: bool = False
    optimize: bool = False
    supported_types: tuple[str, ...] = ()
    op_set: str = "TFLITE_BUILTINS"
    integer_io: bool = False
    integer_inside: bool = False
    min_cosine: float = 0.9999

    def float_ops_inside(self, ops: Iterable[Sequence]) -> list[str]:
        """The int8 check: names of the ops that compute on float tensors inside a model that
        must be integer inside (empty for the other modes, whose activations are float by
        design).

        Args:
            ops: `(name, input dtypes, output dtypes)` per op, as
                `keras_recalib.export.tflite_ops` reads them from a `.tflite` file.
        """
        if not self.integer_inside:
            return []
        return [
            name
            for name, inputs, outputs in ops
            if name not in BOUNDARY_OPS
            and any(dtype.startswith("float") for dtype in (*inputs, *outputs))
        ]


QUANTIZATIONS: dict[str, QuantizationSpec] = {
    spec.name: spec
    for spec in (
        QuantizationSpec(name="none", summary="float32, no quantization"),
        QuantizationSpec(
            name="float16",
            summary="float16 weights, float32 activations",
            optimize=True,
            supported_types=("float16",),
            min_cosine=0.999,
        ),
        QuantizationSpec(
            name="dynamic",
            summary="int8 weights, activations quantized at run time (dynamic range)",
            optimize=True,
            min_cosine=0.99,
        ),
        QuantizationSpec(
            name="int8",
            summary="full integer: int8 weights and activations, calibrated",
            needs_representative_data=True,
            optimize=True,
            op_set="TFLITE_BUILTINS_INT8",
            integer_io=True,
            integer_inside=True,
            min_cosine=0.99,
        ),
    )
}


def get_spec(quantization: str | None) -> QuantizationSpec:
    """The specification of a mode, by name; `None` is the historical name of `"none"`."""
    name = "none" if quantization is None else quantization
    if not isinstance(name, str) or name not in QUANTIZATIONS:
        raise ValueError(
            f"Argument `quantization` must be one of {', '.join(map(repr, QUANTIZATIONS))} "
            f"(or None for 'none'). Received: quantization={quantization!r}"
        )
    return QUANTIZATIONS[name]

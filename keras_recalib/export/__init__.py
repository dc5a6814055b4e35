"""Deployment: SavedModel export, TFLite conversion (float32, float16, dynamic-range, int8) and
verification of the converted file in the LiteRT interpreter; ONNX export and verification in
ONNX Runtime (the optional `onnx` extra).

The quantization modes and their rules are specified once, in `keras_recalib._quantization`
(`QUANTIZATIONS`, also importable from here); conversion and verification both read them.
Conversion (`_convert.py`) goes through a SavedModel with TFLite built-in ops only and records
the mode in the file; verification (`_verify.py`) reads the record, runs the file and applies
the mode's checks; `.tflite` files are read through the TFLite flatbuffer schema
(`_flatbuffer.py`). ONNX (`_onnx.py`) goes through Keras' `model.export(format="onnx")` and is
verified into the same `VerificationReport`.
"""

from keras_recalib._quantization import QUANTIZATIONS, QuantizationSpec
from keras_recalib.export._convert import (
    TFLiteConversionError,
    convert_tflite,
    export_saved_model,
)
from keras_recalib.export._flatbuffer import TFLiteOp
from keras_recalib.export._onnx import export_onnx, onnx_ops, onnx_opset, verify_onnx
from keras_recalib.export._verify import (
    VerificationReport,
    recorded_quantization,
    run_tflite,
    tflite_ops,
    verify_tflite,
)

__all__ = [
    "QUANTIZATIONS",
    "QuantizationSpec",
    "TFLiteConversionError",
    "TFLiteOp",
    "VerificationReport",
    "convert_tflite",
    "export_onnx",
    "export_saved_model",
    "onnx_opset",
    "onnx_ops",
    "recorded_quantization",
    "run_tflite",
    "tflite_ops",
    "verify_onnx",
    "verify_tflite",
]

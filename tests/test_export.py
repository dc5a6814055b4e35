"""keras_recalib.export on real SavedModels and LiteRT (the `export` command: test_cli.py)."""

import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from contract_utils import convert_builtins_only, random_inputs, randomize_weights

import keras_recalib as kr
from keras_recalib import export
from keras_recalib._quantization import QUANTIZATIONS, get_spec
from keras_recalib.export import _convert, _flatbuffer


@keras.saving.register_keras_serializable(package="keras_recalib_tests")
class CumulativeProduct(keras.layers.Layer):
    """A layer whose op (Cumprod) has no TFLite built-in kernel."""

    def call(self, x):
        return tf.math.cumprod(x, axis=1)


def small_classifier(spatial=(None, None)):
    inputs = keras.Input((*spatial, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    srm = kr.StyleRecalibration()
    x = srm(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(5)(x))
    randomize_weights(srm)
    return model


@pytest.fixture(scope="module")
def classifier():
    keras.utils.set_random_seed(0)
    return small_classifier()


def test_saved_model_has_serving_default_and_dynamic_shapes(classifier, tmp_path):
    path = export.export_saved_model(classifier, tmp_path / "sm")
    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures["serving_default"]
    spec = signature.structured_input_signature[1]
    (only,) = spec.values()
    assert only.shape.as_list() == [None, None, None, 3]
    for shape in [(1, 8, 8, 3), (3, 11, 5, 3)]:
        x = random_inputs(shape)
        (out,) = signature(tf.constant(x)).values()
        np.testing.assert_allclose(out, classifier(x), rtol=1e-5, atol=1e-6)


def test_saved_model_input_shape_fixes_spatial_size(classifier, tmp_path):
    path = export.export_saved_model(classifier, tmp_path / "sm", input_shape=(16, 16, 3))
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    (only,) = signature.structured_input_signature[1].values()
    assert only.shape.as_list() == [None, 16, 16, 3]


@pytest.mark.parametrize(
    "kwargs,name",
    [({"input_shape": (16, 3)}, "input_shape"), ({"input_shape": (0, 16, 3)}, "input_shape")],
)
def test_saved_model_rejects_bad_arguments(classifier, tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=f"Received: {name}="):
        export.export_saved_model(classifier, tmp_path / "sm", **kwargs)
    with pytest.raises(ValueError, match="Received: model="):
        export.export_saved_model("not a model", tmp_path / "sm")


# --- the quantization specification ------------------------------------------------------


def test_quantization_spec_names_and_rules():
    assert list(QUANTIZATIONS) == ["none", "float16", "dynamic", "int8"]
    assert export.QUANTIZATIONS is QUANTIZATIONS
    assert all(name == spec.name for name, spec in QUANTIZATIONS.items())
    assert get_spec(None) is QUANTIZATIONS["none"]
    # Calibration, integer tensors inside and integer I/O belong to full-integer mode only.
    for spec in QUANTIZATIONS.values():
        full_integer = spec.name == "int8"
        assert spec.needs_representative_data == spec.integer_inside == full_integer
        assert spec.integer_io == full_integer
        assert hasattr(tf.lite.OpsSet, spec.op_set)
    assert QUANTIZATIONS["int8"].min_cosine == 0.99
    with pytest.raises(ValueError, match="Received: quantization='int4'"):
        get_spec("int4")


def test_quantization_module_imports_neither_tensorflow_nor_keras():
    source = pathlib.Path(kr.__file__).parent / "_quantization.py"
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('q', {str(source)!r})\n"
        "module = sys.modules['q'] = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "assert list(module.QUANTIZATIONS) == ['none', 'float16', 'dynamic', 'int8']\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout


def test_float_ops_inside_is_the_int8_check():
    ops = [
        ("QUANTIZE", ("float32",), ("int8",)),
        ("CONV_2D", ("int8", "int8", "int32"), ("int8",)),
        ("LOGISTIC", ("float32",), ("float32",)),
        ("MUL", ("int8", "int8"), ("float16",)),
        ("DEQUANTIZE", ("int8",), ("float32",)),
    ]
    assert QUANTIZATIONS["int8"].float_ops_inside(ops) == ["LOGISTIC", "MUL"]
    assert QUANTIZATIONS["int8"].float_ops_inside(ops[:2] + ops[4:]) == []
    for name in ("none", "float16", "dynamic"):
        assert QUANTIZATIONS[name].float_ops_inside(ops) == []


# --- conversion and verification, every mode ----------------------------------------------


def convert(model, path, quantization, data, **kwargs):
    """`convert_tflite` with calibration data exactly where the mode uses it."""
    calibrated = QUANTIZATIONS[quantization].needs_representative_data
    return export.convert_tflite(
        model,
        path,
        quantization=quantization,
        representative_data=data if calibrated else None,
        **kwargs,
    )


# One distribution (random_inputs draws per-channel offsets from the seed): calibration on the
# first 48 samples, verification on the rest.
SAMPLES = random_inputs((80, 12, 12, 3), seed=4)


@pytest.fixture(scope="module")
def converted(classifier, tmp_path_factory):
    """The classifier converted once in every mode: {mode: path}."""
    folder = tmp_path_factory.mktemp("converted")
    return {q: convert(classifier, folder / f"{q}.tflite", q, SAMPLES[:48]) for q in QUANTIZATIONS}


@pytest.mark.slow
@pytest.mark.parametrize("quantization", list(QUANTIZATIONS))
def test_convert_and_verify_every_quantization(classifier, converted, quantization):
    spec = QUANTIZATIONS[quantization]
    path = converted[quantization]
    assert export.recorded_quantization(path) == quantization
    report = export.verify_tflite(classifier, path, SAMPLES[48:])
    assert report.quantization == quantization and report.min_cosine == spec.min_cosine
    assert report.file_size_bytes == path.stat().st_size > 0
    assert report.op_counts.get("LOGISTIC") == 1  # SRM's gate made it in
    # SRM's moments traced for TFLite: two MEANs (and the classifier's pooling), no pooling.
    assert report.op_counts.get("MEAN") == 3 and "AVERAGE_POOL_2D" not in report.op_counts
    assert not any(op.startswith("Flex") for op in report.op_counts)
    assert report.median_latency_ms > 0
    if quantization == "none":
        assert report.max_abs_error < 1e-5
    assert report.fully_int8 == (quantization == "int8"), report.float_ops
    if quantization == "int8":
        assert report.op_counts["QUANTIZE"] == 1 and report.op_counts["DEQUANTIZE"] == 1
    assert report.cosine_similarity >= spec.min_cosine
    assert report.meets_contract, report
    assert report.top1_agreement >= 0.9
    assert "cosine similarity" in str(report) and quantization in str(report)


@pytest.mark.slow
def test_none_is_the_float32_mode(classifier, tmp_path):
    path = export.convert_tflite(classifier, tmp_path / "m.tflite", quantization=None)
    assert export.recorded_quantization(path) == "none"


@pytest.mark.slow
def test_verify_takes_the_mode_from_the_record_or_the_caller(classifier, converted, tmp_path):
    x = SAMPLES[48:]
    stated = export.verify_tflite(classifier, converted["int8"], x, quantization="int8")
    assert stated.quantization == "int8" and stated.fully_int8
    with pytest.raises(ValueError, match="converted with quantization='int8'.*Received: quanti"):
        export.verify_tflite(classifier, converted["int8"], x, quantization="dynamic")
    # A file from another tool has no record: the mode must be stated.
    saved_model = export.export_saved_model(classifier, tmp_path / "sm")
    foreign = tmp_path / "foreign.tflite"
    foreign.write_bytes(convert_builtins_only(saved_model))
    assert export.recorded_quantization(foreign) is None
    with pytest.raises(ValueError, match="no quantization record.*Received: quantization=None"):
        export.verify_tflite(classifier, foreign, x)
    report = export.verify_tflite(classifier, foreign, x, quantization="none")
    assert report.quantization == "none" and report.meets_contract


@pytest.mark.slow
def test_int8_check_finds_the_float_ops_of_a_float_file(converted):
    """The int8 check can fail: applied to a float32 file, it names the file's float ops."""
    content = converted["none"].read_bytes()
    ops = export.tflite_ops(content)
    assert set(QUANTIZATIONS["int8"].float_ops_inside(ops)) >= {"CONV_2D", "LOGISTIC"}


@pytest.mark.slow
def test_int8_with_integer_input_and_output(classifier, tmp_path):
    data = random_inputs((64, 12, 12, 3), seed=5)
    path = export.convert_tflite(
        classifier,
        tmp_path / "model.tflite",
        quantization="int8",
        representative_data=data[:48],
        inference_input_type="int8",
        inference_output_type="int8",
    )
    report = export.verify_tflite(classifier, path, data[48:])
    assert report.input_dtype == "int8"
    assert "QUANTIZE" not in report.op_counts and "DEQUANTIZE" not in report.op_counts
    assert report.fully_int8 and report.cosine_similarity >= 0.99


def test_convert_rejects_bad_arguments(classifier, tmp_path):
    target = tmp_path / "m.tflite"
    with pytest.raises(ValueError, match="Received: quantization='int4'"):
        export.convert_tflite(classifier, target, quantization="int4")
    with pytest.raises(ValueError, match="Received: representative_data=None"):
        export.convert_tflite(classifier, target, quantization="int8")
    with pytest.raises(ValueError, match=r"Received: representative_data=<ndarray of shape"):
        export.convert_tflite(
            classifier, target, quantization="float16", representative_data=np.zeros((4, 8))
        )
    with pytest.raises(ValueError, match="Received: inference_input_type='int8'"):
        export.convert_tflite(classifier, target, inference_input_type="int8")
    with pytest.raises(ValueError, match="Received: tflite_path="):
        export.verify_tflite(classifier, tmp_path / "missing.tflite", random_inputs((2, 8, 8, 3)))
    assert not target.exists()


def test_convert_refuses_input_shape_with_a_saved_model(classifier, tmp_path):
    saved_model = export.export_saved_model(classifier, tmp_path / "sm")
    with pytest.raises(ValueError, match=r"Received: input_shape=\(8, 8, 3\)"):
        export.convert_tflite(str(saved_model), tmp_path / "m.tflite", input_shape=(8, 8, 3))
    assert not (tmp_path / "m.tflite").exists()


# --- reading .tflite files -----------------------------------------------------------------


@pytest.mark.slow
def test_op_reader_names_ops_and_tensor_dtypes(converted):
    float_ops = export.tflite_ops(converted["none"])
    assert float_ops == export.tflite_ops(converted["none"].read_bytes())
    conv = next(op for op in float_ops if op.name == "CONV_2D")
    assert conv.inputs == ("float32", "float32", "float32") and conv.outputs == ("float32",)
    int8_ops = export.tflite_ops(converted["int8"])
    assert int8_ops[0] == ("QUANTIZE", ("float32",), ("int8",))
    assert int8_ops[-1] == ("DEQUANTIZE", ("int8",), ("float32",))
    conv = next(op for op in int8_ops if op.name == "CONV_2D")
    assert conv.inputs == ("int8", "int8", "int32") and conv.outputs == ("int8",)
    with pytest.raises(ValueError, match="Received: content starting with"):
        export.tflite_ops(b"not a flatbuffer at all")


@pytest.mark.slow
def test_op_reader_names_custom_ops(tmp_path):
    """Custom ops (here a Flex op, converted with SELECT_TF_OPS on purpose) keep their code."""
    saved_model = export.export_saved_model(flex_model(), tmp_path / "sm")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS,
        tf.lite.OpsSet.SELECT_TF_OPS,
    ]
    names = [op.name for op in export.tflite_ops(converter.convert())]
    assert "FlexCumprod" in names and "CONV_2D" in names


@pytest.mark.slow
@pytest.mark.parametrize("module_name", _flatbuffer.SCHEMA_MODULES)
def test_every_schema_module_reads_the_same(converted, module_name):
    """Fails when a schema module moves: the LiteRT one, and TensorFlow's non-public copy that
    installs without LiteRT fall back to."""
    content = converted["int8"].read_bytes()
    assert _flatbuffer.read_ops(content, module_name) == export.tflite_ops(content)
    recorded = _flatbuffer.read_metadata(content, _convert.RECORD_NAME, module_name)
    assert recorded == b"int8"
    marked = _flatbuffer.with_metadata(content, "some.entry", b"value", module_name)
    assert _flatbuffer.read_metadata(marked, "some.entry") == b"value"
    assert export.tflite_ops(marked) == export.tflite_ops(content)


@pytest.mark.slow
def test_the_record_leaves_the_model_unchanged(classifier, tmp_path):
    saved_model = export.export_saved_model(classifier, tmp_path / "sm")
    plain = convert_builtins_only(saved_model)
    marked = _flatbuffer.with_metadata(plain, "some.entry", b"first")
    marked = _flatbuffer.with_metadata(marked, "some.entry", b"second")
    assert _flatbuffer.read_metadata(marked, "some.entry") == b"second"
    assert _flatbuffer.read_metadata(plain, "some.entry") is None
    assert export.tflite_ops(marked) == export.tflite_ops(plain)
    (tmp_path / "plain.tflite").write_bytes(plain)
    (tmp_path / "marked.tflite").write_bytes(marked)
    x = random_inputs((3, 10, 7, 3), seed=2)
    np.testing.assert_array_equal(
        export.run_tflite(tmp_path / "marked.tflite", x),
        export.run_tflite(tmp_path / "plain.tflite", x),
    )


def flex_model():
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 1, name="stem")(inputs)
    return keras.Model(inputs, CumulativeProduct(name="running_product")(x))


@pytest.mark.slow
def test_flex_ops_are_refused_with_ops_and_layers_listed(tmp_path):
    with pytest.raises(export.TFLiteConversionError) as info:
        export.convert_tflite(flex_model(), tmp_path / "m.tflite")
    assert info.value.ops == ["Cumprod"]
    assert info.value.layers == ["running_product"]
    assert "Cumprod" in str(info.value) and "running_product" in str(info.value)
    assert not (tmp_path / "m.tflite").exists()

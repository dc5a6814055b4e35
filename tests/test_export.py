"""keras_recalib.export on real SavedModels and LiteRT (the `export` command: test_cli.py)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from contract_utils import random_inputs, randomize_weights

import keras_recalib as kr
from keras_recalib import export


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


@pytest.mark.slow
@pytest.mark.parametrize("quantization", [None, "float16", "dynamic", "int8"])
def test_convert_and_verify_every_quantization(classifier, tmp_path, quantization):
    data = random_inputs((80, 12, 12, 3), seed=4)
    path = export.convert_tflite(
        classifier,
        tmp_path / "model.tflite",
        quantization=quantization,
        representative_data=data[:48],
    )
    report = export.verify_tflite(classifier, path, data[48:])
    assert report.file_size_bytes == path.stat().st_size > 0
    assert report.op_counts.get("LOGISTIC") == 1  # SRM's gate made it in
    assert not any(op.startswith("Flex") for op in report.op_counts)
    assert report.median_latency_ms > 0
    if quantization is None:
        assert report.max_abs_error < 1e-5
    if quantization == "int8":
        assert report.fully_int8, report.float_ops
        assert report.op_counts["QUANTIZE"] == 1 and report.op_counts["DEQUANTIZE"] == 1
    assert report.cosine_similarity >= 0.99
    assert report.top1_agreement >= 0.9
    assert "cosine similarity" in str(report)


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
    with pytest.raises(ValueError, match="Received: inference_input_type='int8'"):
        export.convert_tflite(classifier, target, inference_input_type="int8")
    with pytest.raises(ValueError, match="Received: tflite_path="):
        export.verify_tflite(classifier, tmp_path / "missing.tflite", random_inputs((2, 8, 8, 3)))


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

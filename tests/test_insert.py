"""insert_recalibration on keras.applications networks, saved models and hand-written graphs."""

import keras
import numpy as np
import pytest
from contract_utils import convert_builtins_only, tflite_run

import keras_recalib as kr
from keras_recalib import _graph_internals as internals
from keras_recalib.models import cifar_resnet, count_macs, insert_recalibration

SHAPE = (32, 32, 3)


def modules(model, cls=kr.StyleRecalibration):
    return [layer for layer in model.layers if isinstance(layer, cls)]


def producer(tensor):
    return internals.producer(tensor).operation


def check_placement(model, branch_suffix, shortcut_suffixes):
    """Every module reads the branch end and feeds an Add whose other input is the shortcut."""
    for module in modules(model):
        assert producer(module.input).name.endswith(branch_suffix), module.name
        (call,) = internals.outbound_calls(module)
        assert isinstance(call.operation, keras.layers.Add)
        (shortcut,) = [t for t in call.inputs if producer(t) is not module]
        source = producer(shortcut)
        assert source.name.endswith(shortcut_suffixes) or isinstance(
            source, keras.layers.MaxPooling2D
        ), (module.name, source.name)


def inputs(seed=0, batch=2):
    return np.random.default_rng(seed).uniform(0, 255, (batch, *SHAPE)).astype("float32")


@pytest.fixture(scope="module")
def mobilenet():
    return keras.applications.MobileNetV2(weights=None, input_shape=SHAPE, alpha=0.35, classes=5)


def test_resnet50_gets_a_module_after_each_branch_batch_norm():
    base = keras.applications.ResNet50(weights=None, input_shape=SHAPE, classes=5)
    model = insert_recalibration(base, "srm")
    assert len(modules(model)) == 16
    check_placement(model, "_3_bn", ("_0_bn", "_out"))
    assert model.get_layer("conv2_block1_add_rclb").input.shape == (None, 8, 8, 256)
    # The original layers (and so their weights) are reused; only the modules are new.
    assert model.get_layer("conv1_conv") is base.get_layer("conv1_conv")
    assert len(model.layers) == len(base.layers) + 16
    assert model(inputs()).shape == (2, 5)


def test_resnet50v2_branches_end_in_a_convolution():
    base = keras.applications.ResNet50V2(weights=None, input_shape=SHAPE, classes=5)
    model = insert_recalibration(base, "srm", unbiased=True)
    assert len(modules(model)) == 16
    check_placement(model, "_3_conv", ("_0_conv", "_out"))
    assert all(module.unbiased for module in modules(model))
    # Stride-2 identity shortcuts of V2 are 1x1 max pools: still recognised as shortcuts.
    # (The Add layer is shared: its newest call is the new model's.)
    add_inputs = internals.inbound_calls(model.get_layer("conv3_block4_out"))[-1].inputs
    assert {type(producer(t)).__name__ for t in add_inputs} == {
        "MaxPooling2D",
        "StyleRecalibration",
    }


def test_mobilenetv2_inverted_residuals(mobilenet):
    x = inputs()
    before = np.asarray(mobilenet(x))
    model = insert_recalibration(mobilenet, kr.StyleRecalibration)
    # Ten stride-1 blocks keep their width and add their input back.
    assert len(modules(model)) == 10
    check_placement(model, "_project_BN", ("_project_BN", "_add"))
    np.testing.assert_allclose(mobilenet(x), before)  # the original is left as it was
    assert np.all(np.isfinite(model(x)))


def test_model_loaded_from_a_keras_file(mobilenet, tmp_path):
    mobilenet.save(tmp_path / "base.keras")
    base = keras.saving.load_model(tmp_path / "base.keras")
    model = insert_recalibration(base, "srm")
    assert len(modules(model)) == 10
    check_placement(model, "_project_BN", ("_project_BN", "_add"))


@pytest.mark.slow
def test_new_model_saves_exports_and_converts(tmp_path):
    # A small network keeps the SavedModel export and TFLite conversion quick.
    model = insert_recalibration(cifar_resnet(8, num_classes=3), "srm")
    for index, module in enumerate(modules(model)):  # non-trivial gates
        module.cfc.assign(np.full(module.cfc.shape, 0.1 * (index + 1), "float32"))
    x = inputs(seed=1, batch=1)
    expected = np.asarray(model(x))

    model.save(tmp_path / "srm.keras")
    reloaded = keras.saving.load_model(tmp_path / "srm.keras")
    assert len(modules(reloaded)) == 3
    np.testing.assert_allclose(reloaded(x), expected, rtol=1e-5, atol=1e-6)

    model.export(tmp_path / "saved", verbose=False)
    tflite = convert_builtins_only(tmp_path / "saved")
    np.testing.assert_allclose(tflite_run(tflite, x), expected, rtol=1e-5, atol=1e-5)


def test_own_plain_resnet_gets_modules_where_resnet_puts_them():
    plain = cifar_resnet(14, num_classes=3)
    macs = count_macs(plain)
    model = insert_recalibration(plain, "srm")
    # Counts read only the model's own calls of the now shared layers.
    assert count_macs(plain) == macs
    assert count_macs(model) == count_macs(cifar_resnet(14, "srm", num_classes=3))
    built = cifar_resnet(14, "srm", num_classes=3)
    assert [m.name for m in modules(model)] == [
        m.name.replace("_rclb", "_add_rclb") for m in modules(built)
    ]
    for module in modules(model):
        assert producer(module.input).name.endswith("_bn2")


def test_graph_with_operators_kwargs_nested_models_and_two_inputs():
    # Auto-names come from global counters: reset them so that `+` below is named "add" here
    # whatever earlier tests created.
    keras.backend.clear_session()
    # A nested functional block whose residual is written with `+`.
    block_in = keras.Input((8, 8, 6))
    y = keras.layers.Conv2D(6, 3, padding="same", name="inner_conv")(block_in)
    y = keras.layers.BatchNormalization(name="inner_bn")(y, training=False)
    block = keras.Model(block_in, block_in + y, name="block")

    image = keras.Input((8, 8, 3), name="image")
    extra = keras.Input((6,), name="extra")
    x = keras.layers.Conv2D(6, 1, name="stem")(image)
    x = block(x)
    branch = keras.layers.Conv2D(6, 3, padding="same", name="branch_conv")(x)
    branch = keras.layers.Dropout(0.5, name="drop")(branch, training=False)
    x = keras.layers.Add(name="add")([x, branch])
    pooled = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Concatenate()([pooled, extra])
    base = keras.Model({"image": image, "extra": extra}, {"logits": out}, name="two_inputs")

    model = insert_recalibration(base, "srm")
    nested = model.get_layer("block")
    assert nested is not base.get_layer("block")
    (inner,) = modules(nested)
    assert producer(inner.input).name == "inner_bn"
    (outer,) = modules(model)
    assert producer(outer.input).name == "drop"
    # Names stay unique across the nested model: both additions are called "add".
    assert {inner.name, outer.name} == {"add_rclb", "add_rclb_1"}
    data = {
        "image": np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32"),
        "extra": np.ones((2, 6), "float32"),
    }
    assert model(data)["logits"].shape == (2, 12)


def test_a_model_without_residual_additions_is_refused():
    image = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 3, name="a")(image)
    b = keras.layers.Conv2D(4, 3, name="b")(image)
    merged = keras.layers.Add()([a, b])  # two equally long paths: not a residual
    model = keras.Model(image, keras.layers.Conv2D(2, 1)(merged))
    with pytest.raises(ValueError, match="no residual addition"):
        insert_recalibration(model, "srm")


def test_bad_models_and_modules_are_refused():
    sequential = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(2, 1)])
    with pytest.raises(ValueError, match="functional keras.Model"):
        insert_recalibration(sequential, "srm")
    with pytest.raises(ValueError, match="functional keras.Model"):
        insert_recalibration(keras.layers.Dense(2), "srm")
    image = keras.Input((4, 4, 3))
    model = keras.Model(image, image + keras.layers.Conv2D(3, 1)(image))
    with pytest.raises(ValueError, match="Received: recalibration=None"):
        insert_recalibration(model, None)
    with pytest.raises(ValueError, match="Received: identifier='nope'"):
        insert_recalibration(model, "nope")
    with pytest.raises(ValueError, match="Received: epsilon=-1"):
        insert_recalibration(model, "srm", epsilon=-1)

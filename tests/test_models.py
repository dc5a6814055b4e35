"""ResNet builders, parameter and MAC counts (the `zoo` command: test_cli.py)."""

import functools

import keras
import numpy as np
import pytest

import keras_recalib as kr
from keras_recalib.models import (
    cifar_resnet,
    count_macs,
    resnet,
    resnet18,
    resnet50,
    resnet_complexity,
    trainable_parameters,
)

# --- parameter counts of the papers' tables ----------------------------------------------------

# (depth, module, millions of trainable parameters): the SRM, SE, SGE and CBAM papers' tables.
PAPER_PARAMETERS = [
    (50, None, 25.56),
    (50, "se", 28.09),
    (50, "srm", 25.62),
    (50, "sge", 25.56),
    (50, "cbam", 28.09),
    (101, None, 44.55),
    (101, "se", 49.33),
    (101, "srm", 44.68),
]


@pytest.mark.parametrize("depth,module,millions", PAPER_PARAMETERS, ids=str)
def test_parameter_counts_match_the_papers(depth, module, millions):
    params = resnet_complexity(depth, module).params
    assert round(params / 1e6, 2) == millions


@pytest.fixture(scope="module")
def srm_resnet50():
    return resnet50("srm")


def test_counts_without_building_equal_the_built_network(srm_resnet50):
    model = srm_resnet50
    counted = resnet_complexity(50, "srm")
    assert trainable_parameters(model) == counted.params == 25_617_448
    # SRM: 2C (channel-wise FC) + 2C (BN scale, shift) per block.
    assert counted.params - resnet_complexity(50).params == 4 * (
        3 * 256 + 4 * 512 + 6 * 1024 + 3 * 2048
    )
    assert count_macs(model) == counted.macs


def test_plain_macs_are_torchvisions():
    # torchvision's tables (convolutions + fc at 224x224): ResNet-50 4.09, ResNet-18 1.81 GMACs.
    assert round(resnet_complexity(50).macs / 1e9, 2) == 4.09
    assert round(resnet_complexity(18).macs / 1e9, 2) == 1.81


def test_srm_macs_follow_the_counting_rule():
    # Per block of output H x W x C: mean (HWC), squared differences (HWC), their mean (HWC),
    # gating product (HWC), plus O(C) for the folded normalisation and affine.
    added = resnet_complexity(50, "srm").macs - resnet_complexity(50).macs
    elements = 3 * 56 * 56 * 256 + 4 * 28 * 28 * 512 + 6 * 14 * 14 * 1024 + 3 * 7 * 7 * 2048
    assert 4 * elements <= added < 4 * elements + 20 * 15104
    assert round(added / 1e9, 2) == 0.02  # the SRM paper: +0.02 GFLOPs on ResNet-50


def test_cifar_resnet_parameters():
    model = cifar_resnet(20)
    # He et al.'s 0.27M, plus the two option-B projections (1x1 conv + BN) 16->32, 32->64.
    projections = 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64
    assert trainable_parameters(model) == 269_722 + projections
    assert model.output_shape == (None, 10)
    assert trainable_parameters(cifar_resnet(20, "srm")) - trainable_parameters(model) == 4 * (
        3 * 16 + 3 * 32 + 3 * 64
    )


# --- topology ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def srm_resnet18():
    return resnet18("srm", num_classes=10, input_shape=(64, 64, 3))


def _producer(tensor):
    from keras_recalib._graph_internals import producer

    return producer(tensor).operation


def test_torchvision_names_and_module_placement(srm_resnet18):
    model = srm_resnet18
    names = {layer.name for layer in model.layers}
    for name in ["conv1", "bn1", "maxpool", "layer1_0_conv1", "layer2_0_downsample_0", "fc"]:
        assert name in names
    assert "layer1_0_downsample_0" not in names
    module = model.get_layer("layer3_1_rclb")
    assert isinstance(module, kr.StyleRecalibration)
    assert _producer(module.input).name == "layer3_1_bn2"
    add = model.get_layer("layer3_1_add")
    assert [_producer(t).name for t in add.input] == ["layer3_1_rclb", "layer3_0_relu"]
    assert sum(isinstance(layer, kr.StyleRecalibration) for layer in model.layers) == 8


def test_batch_norm_and_convolutions_are_pytorchs(srm_resnet18):
    for layer in srm_resnet18.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            assert layer.epsilon == 1e-5 and layer.momentum == 0.9
        if isinstance(layer, keras.layers.Conv2D):
            assert not layer.use_bias
            # Stride-2 convolutions are padded symmetrically by an explicit layer.
            if layer.strides == (2, 2) and layer.kernel_size != (1, 1):
                assert layer.padding == "valid"


def test_bottleneck_stride_sits_on_the_3x3_convolution(srm_resnet50):
    model = srm_resnet50
    assert model.get_layer("layer2_0_conv1").strides == (1, 1)
    assert model.get_layer("layer2_0_conv2").strides == (2, 2)
    assert model.get_layer("layer2_0_downsample_0").strides == (2, 2)
    assert model.get_layer("layer1_0_downsample_0").kernel.shape == (1, 1, 64, 256)
    assert model.get_layer("layer4_2_relu").output.shape == (None, 7, 7, 2048)


def test_feature_map_size_follows_pytorchs_arithmetic():
    model = resnet(18, input_shape=(None, None, 3), include_top=False)
    for size in (224, 45, 33, 64):
        # conv 7/2 pad 3, max pool 3/2 pad 1, then three stride-2 3x3 convolutions with pad 1.
        expected = [size, size + 1]
        for kernel, padding in [(7, 3), (3, 1), (3, 1), (3, 1), (3, 1)]:
            expected = [(n + 2 * padding - kernel) // 2 + 1 for n in expected]
        assert model.compute_output_shape((1, size, size + 1, 3)) == (1, *expected, 512)


def test_cifar_resnet_layout():
    model = cifar_resnet(32, "srm", unbiased=True)
    blocks = [layer for layer in model.layers if isinstance(layer, kr.StyleRecalibration)]
    assert len(blocks) == 15 and all(block.unbiased for block in blocks)
    assert model.get_layer("layer3_4_rclb").input.shape == (None, 8, 8, 64)
    assert model.get_layer("layer2_0_downsample_0").strides == (2, 2)


def test_recalibration_as_class_callable_and_kwargs():
    by_class = cifar_resnet(8, kr.StyleRecalibration, epsilon=0.0)
    assert by_class.get_layer("layer2_0_rclb").epsilon == 0.0
    factory = functools.partial(kr.StyleRecalibration, unbiased=True)
    by_callable = cifar_resnet(8, factory)
    module = by_callable.get_layer("layer3_0_rclb")
    assert module.unbiased and isinstance(module, kr.StyleRecalibration)


def test_saves_and_loads(tmp_path):
    model = cifar_resnet(8, "srm", num_classes=3)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    path = tmp_path / "cifar.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: resnet(42), "Received: depth=42"),
        (lambda: resnet(True), "Received: depth=True"),
        (lambda: cifar_resnet(21), "Received: depth=21"),
        (lambda: cifar_resnet(2), "Received: depth=2"),
        (lambda: resnet(18, num_classes=0), "Received: num_classes=0"),
        (lambda: resnet(18, include_top=1), "Received: include_top=1"),
        (lambda: resnet(18, input_shape=(32, 32)), "Received: input_shape=(32, 32)"),
        (lambda: resnet(18, input_shape=(32, 32, None)), "Received: input_shape"),
        (lambda: resnet(18, "nope"), "Received: identifier='nope'"),
        (lambda: resnet(18, "srm", epsilon=-1.0), "Received: epsilon=-1.0"),
        (lambda: resnet(18, None, epsilon=0.0), "without a module"),
        (lambda: resnet(18, kr.StyleRecalibration()), "cannot be shared"),
        (lambda: resnet(18, 3), "Received: recalibration=3"),
        (lambda: resnet(18, lambda: "srm"), "must return a Keras layer"),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_callable_must_return_a_new_layer_each_time():
    shared = kr.StyleRecalibration()
    shared.build((None, 4, 4, 16))
    with pytest.raises(ValueError, match="new, unbuilt layer"):
        cifar_resnet(8, lambda: shared)

"""SelfCalibratedConv2D against a NumPy reference and PyTorch, and its specific behaviour."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from contract_utils import random_inputs
from references.numpy_scconv import scconv as np_scconv

import keras_recalib as kr
from keras_recalib.convert import load_torch_weights
from keras_recalib.ops import nearest_indices


def random_weights(channels, filters=None, seed=0):
    rng = np.random.default_rng(seed)
    half, out_half = channels // 2, (filters or channels) // 2
    weights = {}
    for name, cout in (("k1", out_half), ("k2", half), ("k3", half), ("k4", out_half)):
        kernel = rng.normal(scale=0.4, size=(cout, half, 3, 3)).astype("float32")
        bn = (
            rng.uniform(0.5, 1.5, cout).astype("float32"),
            rng.normal(size=cout).astype("float32"),
            rng.normal(scale=0.3, size=cout).astype("float32"),
            rng.uniform(0.5, 1.5, cout).astype("float32"),
        )
        weights[name] = (kernel, bn)
    return weights


def torch_state(weights):
    """The seed's state dict names: k2 = Sequential(AvgPool2d, Conv2d, BN) shifts by one."""
    state = {}
    for name, (kernel, (gamma, beta, mean, var)) in weights.items():
        i = 1 if name == "k2" else 0
        state[f"{name}.{i}.weight"] = kernel
        state[f"{name}.{i + 1}.weight"] = gamma
        state[f"{name}.{i + 1}.bias"] = beta
        state[f"{name}.{i + 1}.running_mean"] = mean
        state[f"{name}.{i + 1}.running_var"] = var
        state[f"{name}.{i + 1}.num_batches_tracked"] = np.array(3)
    return state


def loaded_layer(channels, weights, **kwargs):
    layer = kr.SelfCalibratedConv2D(**kwargs)
    layer.build((None, None, None, channels))
    return load_torch_weights(layer, torch_state(weights))


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize(
    "shape,kwargs",
    [
        ((2, 14, 14, 6), {}),
        ((2, 7, 9, 4), {"strides": 2, "filters": 6, "interpolation": "bilinear"}),
        ((2, 6, 5, 4), {"pooling_r": 2, "strides": 2}),
        ((3, 2, 3, 4), {}),  # smaller than pooling_r: the window shrinks to the map
    ],
    ids=["14x14", "7x9_s2_bilinear", "6x5_r2_s2", "2x3_small"],
)
def test_matches_numpy_reference(shape, kwargs, training):
    weights = random_weights(shape[-1], kwargs.get("filters"))
    layer = loaded_layer(shape[-1], weights, **kwargs)
    x = random_inputs(shape, seed=1)
    expected = np_scconv(
        x,
        weights,
        training=training,
        pooling_r=kwargs.get("pooling_r", 4),
        stride=kwargs.get("strides", 1),
        mode=kwargs.get("interpolation", "nearest"),
    )
    np.testing.assert_allclose(layer(x, training=training), expected, rtol=1e-4, atol=1e-4)


# --- options and errors ------------------------------------------------------------------------


@pytest.mark.tensorflow_only
def test_nearest_indices_follow_pytorch_not_tf_resize():
    # 14 -> 3 (pooling_r=4) -> 14: PyTorch takes floor(dst * 3 / 14).
    np.testing.assert_array_equal(nearest_indices(3, 14), [0] * 5 + [1] * 5 + [2] * 4)
    np.testing.assert_array_equal(nearest_indices(1, 7), [0] * 7)
    # Dynamic sizes give the same indices as tensors.
    np.testing.assert_array_equal(
        nearest_indices(tf.constant(3), tf.constant(14)), [0] * 5 + [1] * 5 + [2] * 4
    )
    column = tf.reshape(tf.range(3, dtype=tf.float32), (1, 3, 1, 1))
    tf_resized = tf.image.resize(column, (14, 1), method="nearest")[0, :, 0, 0]
    assert not np.array_equal(tf_resized, [0] * 5 + [1] * 5 + [2] * 4)


@pytest.mark.parametrize(
    "kwargs,shape,expected",
    [
        ({}, (2, 5, 6, 8), (2, 5, 6, 8)),
        ({"filters": 4}, (2, 5, 6, 8), (2, 5, 6, 4)),
        ({"strides": 2, "filters": 12}, (2, 5, 6, 8), (2, 3, 3, 12)),
        ({"strides": 3}, (1, 7, 1, 2), (1, 3, 1, 2)),
    ],
)
def test_output_shape(kwargs, shape, expected):
    layer = kr.SelfCalibratedConv2D(**kwargs)
    assert tuple(layer(random_inputs(shape)).shape) == expected
    assert layer.compute_output_shape(shape) == expected
    assert layer.compute_output_shape((None, None, None, shape[-1]))[1:3] == (None, None)


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.tensorflow_only
def test_dynamic_spatial_size_matches_static(interpolation):
    # Unknown height and width take the reshape pooling and tensor indices; known ones the
    # pooling op and constant indices. Both must agree, small maps included.
    layer = kr.SelfCalibratedConv2D(strides=2, interpolation=interpolation)
    layer.build((None, None, None, 4))
    dynamic = tf.function(
        lambda t: layer(t, training=False),
        input_signature=[tf.TensorSpec((None, None, None, 4), tf.float32)],
    )
    for shape in [(2, 14, 14, 4), (1, 7, 9, 4), (2, 2, 3, 4), (1, 1, 1, 4)]:
        x = random_inputs(shape, seed=shape[1])
        np.testing.assert_allclose(dynamic(x), layer(x, training=False), rtol=1e-5, atol=1e-5)


def test_default_kernels_follow_official_init_and_layer_is_not_a_gate():
    layer = kr.SelfCalibratedConv2D()
    layer.build((None, None, None, 128))
    std = np.std(np.asarray(layer.k3_conv.kernel))
    np.testing.assert_allclose(std, np.sqrt(2.0 / (9 * 64)), rtol=0.05)
    assert kr.SelfCalibratedConv2D.is_gate is False


def test_channel_layout_and_parameter_count():
    layer = kr.SelfCalibratedConv2D(filters=6)
    layer.build((None, None, None, 8))
    assert tuple(layer.k1_conv.kernel.shape) == (3, 3, 4, 3)
    assert tuple(layer.k2_conv.kernel.shape) == (3, 3, 4, 4)
    assert tuple(layer.k3_conv.kernel.shape) == (3, 3, 4, 4)
    assert tuple(layer.k4_conv.kernel.shape) == (3, 3, 4, 3)
    # The docstring's count, C = 8 and F = 6: 9C^2/2 + 9CF/2 + 2(C + F).
    trainable = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
    assert trainable == 9 * 64 // 2 + 9 * 8 * 6 // 2 + 2 * (8 + 6)
    square = kr.SelfCalibratedConv2D()
    square.build((None, None, None, 8))
    # A plain bias-free 3x3 conv C -> C (9C^2) plus four BNs (4C).
    assert sum(int(np.prod(w.shape)) for w in square.trainable_weights) == 9 * 64 + 4 * 8


def test_odd_channels_are_refused_at_build():
    with pytest.raises(ValueError, match=r"even channel count.*Received: input_shape="):
        kr.SelfCalibratedConv2D()(keras.Input((None, None, 5)))


@pytest.mark.parametrize("filters", [3, 0, "8", 4.0])
def test_bad_filters_are_refused(filters):
    with pytest.raises(ValueError, match=r"`filters`.*Received: filters="):
        kr.SelfCalibratedConv2D(filters=filters)


def test_factory_name_and_config():
    layer = kr.get("scconv", filters=4, interpolation="BILINEAR")
    assert isinstance(layer, kr.SelfCalibratedConv2D)
    assert layer.get_config()["interpolation"] == "bilinear"
    assert "scconv" in kr.available()


def test_kernels_get_independent_initial_values():
    layer = kr.SelfCalibratedConv2D()
    layer.build((None, None, None, 4))
    assert not np.allclose(layer.k2_conv.kernel, layer.k3_conv.kernel)


@pytest.mark.tensorflow_only
def test_regularizer_and_synchronized_reach_every_sublayer():
    layer = kr.SelfCalibratedConv2D(kernel_regularizer="l2", synchronized=True)
    layer(random_inputs((1, 4, 4, 4)))
    assert len(layer.losses) == 4
    assert all(getattr(layer, f"k{i}_bn").synchronized for i in range(1, 5))


def test_loader_reports_wrong_keys():
    weights = random_weights(4)
    state = torch_state(weights)
    del state["k2.1.weight"]
    state["k2.0.weight"] = weights["k2"][0]
    state["k4.0.weight"] = np.zeros((2, 3, 3, 3), "float32")
    layer = kr.SelfCalibratedConv2D()
    layer.build((None, None, None, 4))
    with pytest.raises(ValueError) as info:
        load_torch_weights(layer, state)
    message = str(info.value)
    assert "missing key 'k2.1.weight'" in message
    assert "unexpected key 'k2.0.weight'" in message
    assert "'k4.0.weight' has shape (2, 3, 3, 3), expected (2, 2, 3, 3)" in message


# --- numerical parity with PyTorch (optional: skipped without torch) ---------------------------


def torch_scconv(channels, filters=None, pooling_r=4, stride=1, mode="nearest"):
    torch = pytest.importorskip("torch")
    from references.torch_modules import SCConv

    return torch, SCConv(channels, filters, pooling_r, stride, mode)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize(
    "shape,kwargs",
    [
        ((2, 14, 14, 8), {}),
        ((3, 7, 7, 4), {}),
        ((2, 14, 14, 4), {"strides": 2, "filters": 6}),
        ((2, 7, 10, 4), {"strides": 2, "interpolation": "bilinear"}),
    ],
    ids=["14x14", "7x7", "14x14_s2_f6", "7x10_s2_bilinear"],
)
def test_matches_pytorch(shape, kwargs, train):
    channels = shape[-1]
    torch, module = torch_scconv(
        channels,
        kwargs.get("filters"),
        stride=kwargs.get("strides", 1),
        mode=kwargs.get("interpolation", "nearest"),
    )
    weights = random_weights(channels, kwargs.get("filters"), seed=3)
    state = torch_state(weights)
    module.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    module.train(train)
    layer = loaded_layer(channels, weights, **kwargs)
    x = random_inputs(shape, seed=2)
    with torch.no_grad():
        expected = module(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(layer(x, training=train), expected, rtol=1e-5, atol=1e-5)
    if train:
        # Moving means follow PyTorch's update (momentum 0.1 == Keras 0.9); the moving
        # variances differ by n/(n-1) by design (README, "Known differences").
        for name, index in (("k1", 1), ("k2", 2), ("k3", 1), ("k4", 1)):
            np.testing.assert_allclose(
                getattr(layer, f"{name}_bn").moving_mean,
                getattr(module, name)[index].running_mean,
                rtol=1e-5,
                atol=1e-6,
            )

"""ConvBlockAttention against a NumPy reference and PyTorch, and its options and errors."""

import numpy as np
import pytest
from contract_utils import batch_norm_ops, random_inputs
from references.numpy_channel import cbam as cbam_reference

import keras_recalib as kr
from keras_recalib.convert import load_torch_weights


def cbam_state(channels, width, k=7, seed=0, use_spatial=True):
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return rng.normal(size=shape).astype("float32")

    state = {
        "ChannelGate.mlp.1.weight": normal(width, channels),
        "ChannelGate.mlp.1.bias": normal(width),
        "ChannelGate.mlp.3.weight": normal(channels, width),
        "ChannelGate.mlp.3.bias": normal(channels),
    }
    if use_spatial:
        state.update(
            {
                "SpatialGate.spatial.conv.weight": normal(1, 2, k, k) * 0.3,
                "SpatialGate.spatial.bn.weight": rng.uniform(0.5, 1.5, 1).astype("float32"),
                "SpatialGate.spatial.bn.bias": normal(1),
                "SpatialGate.spatial.bn.running_mean": normal(1),
                "SpatialGate.spatial.bn.running_var": rng.uniform(0.5, 1.5, 1).astype("float32"),
                "SpatialGate.spatial.bn.num_batches_tracked": np.array(3),
            }
        )
    return state


def built_cbam(channels, **kwargs):
    layer = kr.ConvBlockAttention(**kwargs)
    layer.build((None, None, None, channels))
    return layer


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"pool_types": ["avg"]},
        {"pool_types": ["lse", "lp", "max"]},
        {"spatial_kernel_size": 3},
        {"use_spatial": False},
    ],
    ids=["default", "avg", "lse_lp_max", "k3", "no_spatial"],
)
@pytest.mark.parametrize("training", [False, True])
def test_matches_numpy_reference(kwargs, training):
    channels, reduction = 8, 4
    k = kwargs.get("spatial_kernel_size", 7)
    use_spatial = kwargs.get("use_spatial", True)
    state = cbam_state(channels, channels // reduction, k, seed=1, use_spatial=use_spatial)
    layer = load_torch_weights(built_cbam(channels, reduction=reduction, **kwargs), state)
    x = random_inputs((3, 5, 4, channels), seed=2)
    expected = cbam_reference(
        x,
        state,
        pool_types=kwargs.get("pool_types", ("avg", "max")),
        training=training,
        use_spatial=use_spatial,
    )
    np.testing.assert_allclose(layer(x, training=training), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "channels,kwargs,width,spatial",
    [
        (64, {}, 4, 2 * 49 + 2),
        (32, {"reduction": 8}, 4, 2 * 49 + 2),
        (8, {}, 1, 2 * 49 + 2),
        (8, {"bottleneck_channels": 3, "spatial_kernel_size": 3}, 3, 2 * 9 + 2),
        (16, {"use_spatial": False}, 1, 0),
    ],
)
def test_width_and_parameter_count(channels, kwargs, width, spatial):
    layer = built_cbam(channels, **kwargs)
    assert layer.fc1_kernel.shape == (channels, width)
    # The spatial BatchNorm's moving statistics are not parameters (2 of them).
    trainable = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
    assert trainable == 2 * channels * width + width + channels + spatial


def test_initial_spatial_gate_is_one_half():
    layer = built_cbam(8, reduction=2)
    x = random_inputs((2, 4, 5, 8))
    for training in (False, True):
        spatial = layer.gates(x, training=training)["spatial"]
        np.testing.assert_allclose(spatial, 0.5, rtol=1e-6)
    assert (
        kr.ConvBlockAttention(spatial_gamma_initializer="ones").get_config()[
            "spatial_gamma_initializer"
        ]["class_name"]
        == "Ones"
    )


def test_spatial_gate_stacks_channel_max_first():
    layer = built_cbam(4, spatial_kernel_size=1)
    layer.spatial_bn.gamma.assign([1.0])
    # Only the first input channel of the filter is non-zero: the gate sees the channel max.
    layer.spatial_kernel.assign(np.array([1.0, 0.0]).reshape(1, 1, 2, 1))
    x = random_inputs((2, 3, 3, 4))
    gates = layer.gates(x)
    gated = x * np.asarray(gates["channel"])  # the spatial gate sees the channel-gated input
    expected = 1.0 / (1.0 + np.exp(-gated.max(axis=-1, keepdims=True) / np.sqrt(1 + 1e-5)))
    np.testing.assert_allclose(gates["spatial"], expected, rtol=1e-5)


@pytest.mark.tensorflow_only
def test_inference_folds_the_batch_norm():
    layer = load_torch_weights(built_cbam(8, reduction=4), cbam_state(8, 2, seed=3))
    assert batch_norm_ops(layer, 8, training=False) == []
    assert batch_norm_ops(layer, 8, training=True)  # the check can see a normalisation


def test_frozen_layer_runs_in_inference_mode():
    layer = load_torch_weights(built_cbam(8, reduction=4), cbam_state(8, 2, seed=3))
    layer.trainable = False
    x = random_inputs((3, 4, 4, 8))
    np.testing.assert_array_equal(layer(x, training=True), layer(x, training=False))


@pytest.mark.tensorflow_only
def test_synchronized_is_passed_to_batch_norm():
    assert built_cbam(8, synchronized=True).spatial_bn.synchronized is True
    assert built_cbam(8).spatial_bn.momentum == pytest.approx(0.99)


def test_pool_types_are_normalised_and_serialised_as_a_list():
    layer = kr.ConvBlockAttention(pool_types=("AVG", "lse"))
    assert layer.pool_types == ("avg", "lse")
    assert layer.get_config()["pool_types"] == ["avg", "lse"]


def test_factory_name():
    assert isinstance(kr.get("cbam", reduction=8), kr.ConvBlockAttention)


@pytest.mark.parametrize(
    "kwargs,name,expected",
    [
        ({"spatial_kernel_size": 4}, "spatial_kernel_size", "an odd integer"),
        ({"pool_types": ["avg", "median"]}, "pool_types", "a non-empty list of distinct names"),
        ({"pool_types": "avg"}, "pool_types", "a non-empty list"),
        ({"use_spatial": 0}, "use_spatial", r"a bool \(True or False\)"),
        ({"momentum": -0.1}, "momentum", ">= 0.0"),
    ],
)
def test_errors(kwargs, name, expected):
    with pytest.raises(ValueError, match=rf"`{name}` must be {expected}.*Received: {name}="):
        kr.ConvBlockAttention(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"spatial_kernel_size": 3},
        pytest.param({"synchronized": True}, marks=pytest.mark.tensorflow_only),
        {"momentum": 0.9},
        {"norm_epsilon": 1e-3},
        {"spatial_gamma_initializer": "ones"},
    ],
)
def test_spatial_arguments_need_the_spatial_gate(kwargs):
    (name,) = kwargs
    pattern = rf"`{name}` has no effect with use_spatial=False.*Received: {name}="
    with pytest.raises(ValueError, match=pattern):
        kr.ConvBlockAttention(use_spatial=False, **kwargs)
    config = kr.ConvBlockAttention(use_spatial=False).get_config()
    assert kr.ConvBlockAttention.from_config(config).get_config() == config
    with pytest.raises(ValueError, match=pattern):
        kr.ConvBlockAttention.from_config({**config, **kwargs})
    built_cbam(8, **kwargs)  # active with the spatial gate


def test_initializers_refuse_none():
    for name in ("spatial_gamma_initializer", "kernel_initializer"):
        with pytest.raises(ValueError, match=rf"`{name}` must be a Keras initializer.*=None"):
            kr.ConvBlockAttention(**{name: None})


# --- PyTorch weights ---------------------------------------------------------------------------


def test_spatial_keys_follow_use_spatial():
    with pytest.raises(ValueError, match="missing key 'SpatialGate.spatial.conv.weight'"):
        load_torch_weights(built_cbam(8, reduction=4), cbam_state(8, 2, use_spatial=False))
    with pytest.raises(ValueError, match="unexpected key 'SpatialGate.spatial.bn.bias'"):
        load_torch_weights(built_cbam(8, reduction=4, use_spatial=False), cbam_state(8, 2))


def torch_cbam(channels, reduction, pool_types, k):
    torch = pytest.importorskip("torch")
    from references.torch_modules import CBAM

    return torch, CBAM(channels, reduction, pool_types, k)


@pytest.mark.parametrize(
    "pool_types,k", [(("avg", "max"), 7), (("avg", "max", "lp", "lse"), 3)], ids=["official", "all"]
)
@pytest.mark.parametrize("train", [False, True])
def test_matches_pytorch(pool_types, k, train):
    channels, reduction = 12, 4
    torch, module = torch_cbam(channels, reduction, pool_types, k)
    state = cbam_state(channels, channels // reduction, k, seed=4)
    module.load_state_dict({key: torch.from_numpy(np.asarray(v)) for key, v in state.items()})
    module.train(train)
    layer = built_cbam(channels, reduction=reduction, pool_types=pool_types, spatial_kernel_size=k)
    load_torch_weights(layer, state)
    x = random_inputs((3, 5, 6, channels), seed=5)
    with torch.no_grad():
        expected = module(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(layer(x, training=train), expected, rtol=1e-5, atol=1e-5)
    if train:
        # Moving mean follows PyTorch's update (momentum 0.01 == Keras 0.99).
        bn = module.SpatialGate.spatial.bn
        np.testing.assert_allclose(layer.spatial_bn.moving_mean, bn.running_mean, rtol=1e-5)

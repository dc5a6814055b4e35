"""Coordinate Attention against a NumPy reference and PyTorch, and its specific behaviour."""

import keras
import numpy as np
import pytest
from contract_utils import random_inputs
from references.numpy_spatial import coordinate_attention as ca_reference

import keras_recalib as kr
from keras_recalib.convert import load_torch_weights


def random_state(channels, mip, seed=0):
    """A state dict named as `coordatt.py` names it, 1x1 kernels as (out, in, 1, 1)."""
    rng = np.random.default_rng(seed)

    def f(*shape, low=None):
        if low is not None:
            return rng.uniform(low, 1.5, size=shape).astype("float32")
        return rng.normal(scale=0.5, size=shape).astype("float32")

    return {
        "conv1.weight": f(mip, channels, 1, 1),
        "conv1.bias": f(mip),
        "bn1.weight": f(mip, low=0.5),
        "bn1.bias": f(mip),
        "bn1.running_mean": f(mip),
        "bn1.running_var": f(mip, low=0.5),
        "bn1.num_batches_tracked": np.array(3),
        "conv_h.weight": f(channels, mip, 1, 1),
        "conv_h.bias": f(channels),
        "conv_w.weight": f(channels, mip, 1, 1),
        "conv_w.bias": f(channels),
    }


def squeezed(state):
    return {k: (v[:, :, 0, 0] if v.ndim == 4 else v) for k, v in state.items()}


def built_ca(channels, **kwargs):
    layer = kr.CoordinateAttention(**kwargs)
    layer.build((None, None, None, channels))
    return layer


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("reduction,min_channels", [(32, 8), (2, 1)])
def test_matches_numpy_reference(training, reduction, min_channels):
    channels = 8
    layer = built_ca(channels, reduction=reduction, min_channels=min_channels)
    state = random_state(channels, layer.mip, seed=1)
    # Assigned by hand (not through the loader) to keep the reference independent of it.
    layer.conv1.kernel.assign(state["conv1.weight"][:, :, 0, 0].T[None, None])
    layer.conv1.bias.assign(state["conv1.bias"])
    layer.bn1.gamma.assign(state["bn1.weight"])
    layer.bn1.beta.assign(state["bn1.bias"])
    layer.bn1.moving_mean.assign(state["bn1.running_mean"])
    layer.bn1.moving_variance.assign(state["bn1.running_var"])
    for name in ("conv_h", "conv_w"):
        getattr(layer, name).kernel.assign(state[f"{name}.weight"][:, :, 0, 0].T[None, None])
        getattr(layer, name).bias.assign(state[f"{name}.bias"])
    x = random_inputs((3, 5, 6, channels), seed=2)
    expected = ca_reference(x, squeezed(state), training=training)
    np.testing.assert_allclose(layer(x, training=training), expected, rtol=1e-5, atol=1e-5)


def test_bottleneck_width_and_parameter_count():
    for channels, reduction, min_channels, mip in [(64, 32, 8, 8), (512, 32, 8, 16), (6, 4, 1, 1)]:
        layer = built_ca(channels, reduction=reduction, min_channels=min_channels)
        assert layer.mip == mip
        assert tuple(layer.conv1.kernel.shape) == (1, 1, channels, mip)
        trainable = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
        assert trainable == 3 * channels * mip + 3 * mip + 2 * channels


def test_default_initializer_is_the_official_fan_out_normal():
    layer = kr.CoordinateAttention()
    init = layer.kernel_initializer
    assert isinstance(init, keras.initializers.VarianceScaling)
    assert (init.scale, init.mode, init.distribution) == (2.0, "fan_out", "untruncated_normal")
    clone = kr.CoordinateAttention.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    layer.build((None, None, None, 16))
    assert not np.allclose(layer.conv_h.kernel, layer.conv_w.kernel)
    np.testing.assert_array_equal(layer.conv_h.bias, 0.0)
    assert (
        kr.CoordinateAttention(kernel_initializer="zeros").get_config()["kernel_initializer"][
            "class_name"
        ]
        == "Zeros"
    )


def test_gates_have_row_and_column_shapes():
    layer = built_ca(8)
    gates = layer.gates(random_inputs((2, 5, 7, 8)))
    a_h, a_w = gates["height"], gates["width"]
    assert tuple(a_h.shape) == (2, 5, 1, 8)
    assert tuple(a_w.shape) == (2, 1, 7, 8)


def test_frozen_layer_runs_in_inference_mode():
    layer = load_torch_weights(built_ca(8), random_state(8, 8))
    layer.trainable = False
    x = random_inputs((3, 4, 5, 8))
    np.testing.assert_array_equal(layer(x, training=True), layer(x, training=False))


@pytest.mark.tensorflow_only
def test_regularizer_and_synchronized_reach_the_sublayers():
    layer = built_ca(8, kernel_regularizer="l2", synchronized=True)
    assert layer.bn1.synchronized is True
    layer(random_inputs((1, 3, 3, 8)))
    assert len(layer.losses) == 3


@pytest.mark.parametrize(
    "bad,name",
    [({"reduction": 0}, "reduction"), ({"min_channels": 1.5}, "min_channels")],
)
def test_bad_arguments_name_themselves(bad, name):
    with pytest.raises(ValueError, match=rf"`{name}`.*Received: {name}="):
        kr.CoordinateAttention(**bad)


def test_loader_reports_missing_and_misshaped_keys():
    state = random_state(8, 8)
    del state["conv_w.bias"]
    state["conv1.weight"] = state["conv1.weight"][:4]
    with pytest.raises(ValueError) as info:
        load_torch_weights(built_ca(8), state)
    assert "missing key 'conv_w.bias'" in str(info.value)
    assert "'conv1.weight' has shape (4, 8, 1, 1), expected (8, 8, 1, 1)" in str(info.value)


# --- numerical parity with PyTorch (skipped without torch) -----------------------------------


def torch_coord_att(channels, names):
    torch = pytest.importorskip("torch")
    from references.torch_modules import CoordAtt

    return torch, CoordAtt(channels, names=names)


@pytest.mark.parametrize("names", [("conv_h", "conv_w"), ("conv2", "conv3")])
@pytest.mark.parametrize("train", [False, True])
def test_matches_pytorch(names, train):
    channels = 16
    torch, module = torch_coord_att(channels, names)
    state = random_state(channels, 8, seed=4)
    state = {
        k.replace("conv_h.", names[0] + ".").replace("conv_w.", names[1] + "."): v
        for k, v in state.items()
    }
    module.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    module.train(train)
    layer = load_torch_weights(built_ca(channels), state)
    x = random_inputs((3, 5, 7, channels), seed=5)
    with torch.no_grad():
        expected = module(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(layer(x, training=train), expected, rtol=1e-5, atol=1e-5)
    if train:
        np.testing.assert_allclose(
            layer.bn1.moving_mean, module.bn1.running_mean, rtol=1e-5, atol=1e-6
        )

"""SqueezeExcitation against a NumPy reference and PyTorch, and its options and errors."""

import keras
import numpy as np
import pytest
from contract_utils import random_inputs
from references.numpy_channel import se as se_reference

import keras_recalib as kr
from keras_recalib.convert import load_torch_weights


def torch_state(channels, width, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "fc.0.weight": rng.normal(size=(width, channels)).astype("float32"),
        "fc.0.bias": rng.normal(size=width).astype("float32"),
        "fc.2.weight": rng.normal(size=(channels, width)).astype("float32"),
        "fc.2.bias": rng.normal(size=channels).astype("float32"),
    }


def built_se(channels, **kwargs):
    layer = kr.SqueezeExcitation(**kwargs)
    layer.build((None, None, None, channels))
    return layer


@pytest.mark.parametrize(
    "channels,kwargs,width",
    [(16, {}, 1), (16, {"reduction": 4}, 4), (6, {"bottleneck_channels": 5}, 5), (3, {}, 1)],
)
@pytest.mark.parametrize("training", [False, True])
def test_matches_numpy_reference(channels, kwargs, width, training):
    layer = built_se(channels, **kwargs)
    state = torch_state(channels, width, seed=channels)
    layer.fc1_kernel.assign(state["fc.0.weight"].T)
    layer.fc1_bias.assign(state["fc.0.bias"])
    layer.fc2_kernel.assign(state["fc.2.weight"].T)
    layer.fc2_bias.assign(state["fc.2.bias"])
    x = random_inputs((3, 4, 5, channels), seed=1)
    expected = se_reference(
        x, *(state[k] for k in ["fc.0.weight", "fc.0.bias", "fc.2.weight", "fc.2.bias"])
    )
    np.testing.assert_allclose(layer(x, training=training), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "channels,kwargs,width",
    [
        (64, {}, 4),
        (64, {"reduction": 8}, 8),
        (10, {"reduction": 4}, 2),
        (8, {}, 1),
        (8, {"bottleneck_channels": 12}, 12),
    ],
)
def test_width_and_parameter_count(channels, kwargs, width):
    layer = built_se(channels, **kwargs)
    assert layer.fc1_kernel.shape == (channels, width)
    assert layer.fc2_kernel.shape == (width, channels)
    assert layer.count_params() == 2 * channels * width + width + channels


def test_the_two_weight_matrices_start_independent():
    layer = built_se(4, reduction=1)
    assert not np.allclose(layer.fc1_kernel, layer.fc2_kernel)
    np.testing.assert_array_equal(layer.fc1_bias, 0.0)
    np.testing.assert_array_equal(layer.fc2_bias, 0.0)


def test_regulariser_applies_to_both_kernels():
    layer = built_se(4, reduction=2, kernel_regularizer=keras.regularizers.L2(1e-2))
    layer.fc1_kernel.assign(np.ones((4, 2)))
    layer.fc2_kernel.assign(np.ones((2, 4)))
    layer(random_inputs((1, 2, 2, 4)))
    np.testing.assert_allclose(sum(layer.losses), 1e-2 * 16, rtol=1e-5)


def test_factory_name():
    layer = kr.get("SE", reduction=4)
    assert isinstance(layer, kr.SqueezeExcitation) and layer.reduction == 4
    assert "se" in kr.available()


@pytest.mark.parametrize(
    "kwargs,name,expected",
    [
        ({"reduction": 0}, "reduction", "an integer >= 1"),
        ({"reduction": True}, "reduction", "an integer"),
        ({"bottleneck_channels": 2.0}, "bottleneck_channels", "an integer or None"),
    ],
)
def test_errors(kwargs, name, expected):
    with pytest.raises(ValueError, match=rf"`{name}` must be {expected}\. Received: {name}="):
        kr.SqueezeExcitation(**kwargs)


# --- PyTorch weights ---------------------------------------------------------------------------


def test_timm_layout_loads():
    state = torch_state(6, 3)
    timm = {
        "fc1.weight": state["fc.0.weight"][:, :, None, None],
        "fc1.bias": state["fc.0.bias"],
        "fc2.weight": state["fc.2.weight"][:, :, None, None],
        "fc2.bias": state["fc.2.bias"],
    }
    official = load_torch_weights(built_se(6, bottleneck_channels=3), state)
    layer = load_torch_weights(built_se(6, bottleneck_channels=3), timm)
    for a, b in zip(official.weights, layer.weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_wrong_width_is_reported():
    with pytest.raises(ValueError, match=r"'fc.0.weight' has shape \(3, 6\), expected \(1, 6\)"):
        load_torch_weights(built_se(6), torch_state(6, 3))


@pytest.mark.parametrize("train", [False, True])
def test_matches_pytorch(train):
    torch = pytest.importorskip("torch")
    from references.torch_modules import SELayer

    channels = 12
    module = SELayer(channels, reduction=4).train(train)
    state = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    layer = load_torch_weights(built_se(channels, reduction=4), state)
    x = random_inputs((3, 5, 4, channels), seed=2)
    with torch.no_grad():
        expected = module(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(layer(x, training=train), expected, rtol=1e-5, atol=1e-5)

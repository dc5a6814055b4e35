"""EfficientChannelAttention against a NumPy reference and PyTorch, and its options and errors."""

import numpy as np
import pytest
from contract_utils import random_inputs
from references.numpy_channel import eca as eca_reference

import keras_recalib as kr
from keras_recalib.convert import load_torch_weights
from keras_recalib.layers.eca import adaptive_kernel_size


@pytest.mark.parametrize(
    "channels,gamma,beta,expected",
    [
        (1, 2, 1, 1),
        (2, 2, 1, 1),
        (8, 2, 1, 3),
        (16, 2, 1, 3),
        (64, 2, 1, 3),
        (128, 2, 1, 5),
        (256, 2, 1, 5),
        (1024, 2, 1, 5),
        (2048, 2, 1, 7),
        (16, 1, 0, 5),
        (16, 1.5, 2.5, 5),
    ],
)
def test_adaptive_kernel_size(channels, gamma, beta, expected):
    assert adaptive_kernel_size(channels, gamma, beta) == expected
    layer = kr.EfficientChannelAttention(gamma=gamma, beta=beta)
    layer.build((None, None, None, channels))
    assert layer.resolved_kernel_size == expected
    assert layer.count_params() == expected


def test_explicit_kernel_size_overrides_the_adaptive_one():
    layer = kr.EfficientChannelAttention(kernel_size=9)
    layer.build((None, None, None, 256))
    assert layer.kernel.shape == (9,)
    assert layer.get_config()["kernel_size"] == 9
    assert kr.EfficientChannelAttention().get_config()["kernel_size"] is None


@pytest.mark.parametrize(
    "channels,kernel_size", [(6, 1), (6, 3), (6, 5), (3, 5), (1, 1), (16, None)]
)
@pytest.mark.parametrize("training", [False, True])
def test_matches_numpy_reference(channels, kernel_size, training):
    layer = kr.EfficientChannelAttention(kernel_size=kernel_size)
    layer.build((None, None, None, channels))
    rng = np.random.default_rng(channels)
    weight = rng.normal(size=layer.resolved_kernel_size)
    layer.kernel.assign(weight)
    x = random_inputs((3, 4, 5, channels), seed=1)
    np.testing.assert_allclose(
        layer(x, training=training), eca_reference(x, weight), rtol=1e-5, atol=1e-5
    )


def test_factory_name():
    assert isinstance(kr.get("eca", kernel_size=5), kr.EfficientChannelAttention)


@pytest.mark.parametrize(
    "kwargs,name,expected",
    [
        ({"kernel_size": 4}, "kernel_size", "an odd integer"),
        ({"kernel_size": 0}, "kernel_size", "an integer >= 1"),
        ({"kernel_size": "3"}, "kernel_size", "an integer or None"),
        ({"gamma": -2.0}, "gamma", "> 0.0"),
        ({"beta": float("inf")}, "beta", "a finite number"),
    ],
)
def test_errors(kwargs, name, expected):
    with pytest.raises(ValueError, match=rf"`{name}` must be {expected}\. Received: {name}="):
        kr.EfficientChannelAttention(**kwargs)


@pytest.mark.parametrize("kwargs", [{"gamma": 1.0}, {"beta": 0.0}, {"gamma": 1, "beta": 2}])
def test_gamma_and_beta_need_the_adaptive_size(kwargs):
    name = next(iter(kwargs))
    pattern = rf"`{name}` has no effect with an explicit kernel_size.*Received: {name}="
    with pytest.raises(ValueError, match=pattern):
        kr.EfficientChannelAttention(kernel_size=3, **kwargs)
    config = kr.EfficientChannelAttention(kernel_size=3).get_config()
    assert kr.EfficientChannelAttention.from_config(config).kernel_size == 3
    with pytest.raises(ValueError, match=pattern):
        kr.EfficientChannelAttention.from_config({**config, **kwargs})
    # The defaults, given explicitly, and the adaptive size with any gamma and beta are fine.
    kr.EfficientChannelAttention(kernel_size=3, gamma=2, beta=1.0)
    kr.EfficientChannelAttention(**kwargs)


def test_kernel_longer_than_the_channels_reach_is_refused_at_build():
    # 3 channels: offsets -2 .. 2, so at most 5 taps.
    kr.EfficientChannelAttention(kernel_size=5).build((None, None, None, 3))
    with pytest.raises(ValueError, match=r"at most 2 \* channels - 1 = 5.*Received: kernel_size=7"):
        kr.EfficientChannelAttention(kernel_size=7).build((None, None, None, 3))
    # The adaptive size from a small gamma: 2 channels give (1 + 1) / 0.25 = 8 -> 9 > 3.
    with pytest.raises(
        ValueError,
        match=r"adaptive size from gamma=0.25, beta=1.0 is 9.*Received: kernel_size=None",
    ):
        kr.EfficientChannelAttention(gamma=0.25)(random_inputs((1, 2, 2, 2)))


# --- PyTorch weights ---------------------------------------------------------------------------


def test_wrong_kernel_size_is_reported():
    layer = kr.EfficientChannelAttention()
    layer.build((None, None, None, 256))
    state = {"conv.weight": np.ones((1, 1, 3), "float32")}
    with pytest.raises(
        ValueError, match=r"'conv.weight' has shape \(1, 1, 3\), expected \(1, 1, 5\)"
    ):
        load_torch_weights(layer, state)


@pytest.mark.parametrize("train", [False, True])
def test_matches_pytorch(train):
    torch = pytest.importorskip("torch")
    from references.torch_modules import ECALayer

    channels, k = 10, 5
    torch.manual_seed(0)
    module = ECALayer(k).train(train)
    state = {k_: v.detach().numpy() for k_, v in module.state_dict().items()}
    layer = kr.EfficientChannelAttention(kernel_size=k)
    layer.build((None, None, None, channels))
    load_torch_weights(layer, state)
    x = random_inputs((3, 5, 4, channels), seed=2)
    with torch.no_grad():
        expected = module(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(layer(x, training=train), expected, rtol=1e-5, atol=1e-5)

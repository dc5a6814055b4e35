"""SGE against a NumPy reference and the official PyTorch forward, and its options."""

import numpy as np
import pytest
from contract_utils import random_inputs
from references.numpy_spatial import sge as sge_reference

import keras_recalib as kr
from keras_recalib.convert import load_torch_weights


def sge_with_weights(channels, groups, seed=0, **kwargs):
    layer = kr.SpatialGroupEnhance(groups=groups, **kwargs)
    layer.build((None, None, None, channels))
    rng = np.random.default_rng(seed)
    weight, bias = rng.normal(size=groups), rng.normal(size=groups)
    layer.weight.assign(weight)
    layer.bias.assign(bias)
    return layer, weight, bias


@pytest.mark.parametrize(
    "groups,shape", [(1, (2, 5, 6, 6)), (3, (3, 4, 7, 6)), (6, (1, 3, 3, 6)), (2, (2, 1, 1, 6))]
)
@pytest.mark.parametrize("training", [False, True])
def test_matches_numpy_reference(groups, shape, training):
    layer, weight, bias = sge_with_weights(shape[-1], groups)
    x = random_inputs(shape, seed=1)
    expected = sge_reference(x, weight, bias, groups)
    np.testing.assert_allclose(layer(x, training=training), expected, rtol=1e-5, atol=1e-5)


def test_official_and_seed_initial_gates():
    x = random_inputs((2, 4, 5, 8))
    # Official: weight 0, bias 1 -> gate sigmoid(1) everywhere.
    official = kr.SpatialGroupEnhance(groups=4)
    np.testing.assert_allclose(official(x), x / (1 + np.exp(-1.0)), rtol=1e-6)
    # The seed's copy: both zeros -> gate 0.5.
    seed = kr.SpatialGroupEnhance(groups=4, bias_initializer="zeros")
    np.testing.assert_allclose(seed(x), x * 0.5, rtol=1e-6)


def test_one_by_one_map_uses_the_bias_only():
    layer, _, bias = sge_with_weights(4, 2)
    x = random_inputs((3, 1, 1, 4))
    gate = np.repeat(1 / (1 + np.exp(-bias)), 2)
    np.testing.assert_allclose(layer(x), x * gate, rtol=1e-5)


def test_groups_must_divide_channels():
    with pytest.raises(ValueError, match=r"`groups`.*channels \(6\).*Received: groups=4"):
        kr.SpatialGroupEnhance(groups=4).build((None, 5, 5, 6))


def test_factory_name_and_parameter_count():
    layer = kr.get("sge", groups=8)
    assert isinstance(layer, kr.SpatialGroupEnhance)
    layer.build((None, 7, 7, 64))
    assert layer.count_params() == 2 * 8


# --- PyTorch: official PytorchInsight forward ----------------------------------------------------


def torch_sge(groups):
    torch = pytest.importorskip("torch")
    from references.torch_modules import SpatialGroupEnhance

    return torch, SpatialGroupEnhance(groups)


@pytest.mark.parametrize("groups", [2, 4])
def test_matches_pytorch(groups):
    channels = 8
    torch, module = torch_sge(groups)
    rng = np.random.default_rng(5)
    state = {
        "weight": rng.normal(size=(1, groups, 1, 1)).astype("float32"),
        "bias": rng.normal(size=(1, groups, 1, 1)).astype("float32"),
    }
    module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    layer = kr.SpatialGroupEnhance(groups=groups)
    layer.build((None, None, None, channels))
    load_torch_weights(layer, state)
    x = random_inputs((3, 5, 6, channels), seed=2)
    with torch.no_grad():
        expected = module(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    for training in (False, True):
        np.testing.assert_allclose(layer(x, training=training), expected, rtol=1e-5, atol=1e-5)


def test_loader_reports_wrong_shapes():
    layer = kr.SpatialGroupEnhance(groups=4)
    layer.build((None, None, None, 8))
    state = {"weight": np.zeros((1, 2, 1, 1), "float32")}
    with pytest.raises(ValueError) as info:
        load_torch_weights(layer, state)
    assert "'weight' has shape (1, 2, 1, 1), expected (1, 4, 1, 1)" in str(info.value)
    assert "missing key 'bias'" in str(info.value)


@pytest.mark.tensorflow_only
def test_xla_statistics_path_matches_graph_mode():
    # Under XLA the similarity's moments come from the shared partial sums, elsewhere from
    # tf.nn.moments: outputs and gradients agree.
    import tensorflow as tf

    layer = kr.SpatialGroupEnhance(groups=4)
    x = tf.constant(random_inputs((2, 5, 7, 16), seed=3))
    layer.build(x.shape)
    layer.weight.assign(np.linspace(-1.0, 1.0, 4).reshape(layer.weight.shape))

    def step(t):
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = layer(t, training=True)
        return (y, *tape.gradient(y, [t, *layer.trainable_weights]))

    graph = tf.function(step)(x)
    xla = tf.function(step, jit_compile=True)(x)
    for a, e in zip(xla, graph, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-5)

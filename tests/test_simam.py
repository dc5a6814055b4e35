"""SimAM against a NumPy reference and the official PyTorch forward, and its edge cases."""

import numpy as np
import pytest
from contract_utils import random_inputs, value_and_gradients
from references.numpy_spatial import simam as simam_reference

import keras_recalib as kr
from keras_recalib.convert import load_torch_weights


@pytest.mark.parametrize("e_lambda", [1e-4, 0.1])
@pytest.mark.parametrize("shape", [(2, 5, 6, 3), (1, 1, 1, 4), (3, 1, 7, 2)])
def test_matches_numpy_reference(e_lambda, shape):
    layer = kr.SimAM(e_lambda=e_lambda)
    x = random_inputs(shape, seed=4)
    expected = simam_reference(x, e_lambda)
    for training in (False, True):
        np.testing.assert_allclose(layer(x, training=training), expected, rtol=1e-5, atol=1e-6)


def test_one_by_one_map_gate_is_sigmoid_of_one_half():
    x = random_inputs((2, 1, 1, 5))
    np.testing.assert_allclose(kr.SimAM()(x), x / (1 + np.exp(-0.5)), rtol=1e-6)


def test_gate_range():
    layer = kr.SimAM()
    gate = np.asarray(layer.gates(random_inputs((2, 6, 6, 3), scale=10.0))["element"])
    assert np.all(gate >= 1 / (1 + np.exp(-0.5)) - 1e-7) and np.all(gate <= 1.0)


def test_factory_name_and_no_parameters():
    layer = kr.get("simam", e_lambda=0.1)
    assert isinstance(layer, kr.SimAM) and layer.e_lambda == 0.1
    layer.build((None, 4, 4, 8))
    assert layer.weights == []


def test_lambda_must_stay_representable_in_float32():
    kr.SimAM(e_lambda=1e-10)
    with pytest.raises(
        ValueError, match=r"`e_lambda` must be >= 1e-10.*NaN.*Received: e_lambda=1e-12"
    ):
        kr.SimAM(e_lambda=1e-12)
    # The smallest accepted lambda keeps a constant map finite.
    x = np.full((1, 3, 3, 2), 0.7, "float32")
    assert np.all(np.isfinite(np.asarray(kr.SimAM(e_lambda=1e-10)(x))))


def test_load_torch_weights_accepts_only_an_empty_state_dict():
    layer = kr.SimAM()
    layer.build((None, None, None, 3))
    assert load_torch_weights(layer, {}) is layer
    with pytest.raises(ValueError, match="unexpected key 'weight'"):
        load_torch_weights(layer, {"weight": np.ones(3, "float32")})


def test_matches_pytorch():
    torch = pytest.importorskip("torch")
    from references.torch_modules import SimAM

    official = SimAM(e_lambda=1e-4)
    x = random_inputs((3, 5, 7, 4), seed=6)
    expected = official(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(kr.SimAM()(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", ["eager", "graph", "xla", "dynamic"])
@pytest.mark.parametrize("shape", [(2, 5, 6, 3), (1, 1, 1, 4)], ids=["5x6", "1x1"])
@pytest.mark.tensorflow_only
def test_analytic_gradient_matches_autodiff_of_the_formula(path, shape):
    import tensorflow as tf

    def formula(x, e_lambda=1e-4):
        n = tf.maximum(tf.cast(tf.shape(x)[1] * tf.shape(x)[2] - 1, x.dtype), 1.0)
        d = tf.square(x - tf.reduce_mean(x, axis=[1, 2], keepdims=True))
        energy = tf.reduce_sum(d, axis=[1, 2], keepdims=True) / n + e_lambda
        return x * tf.sigmoid(d / (4.0 * energy) + 0.5)

    layer = kr.SimAM(e_lambda=1e-4)
    x = tf.constant(random_inputs(shape, seed=5))
    dy = tf.constant(random_inputs(shape, seed=6))

    wrap = {
        "eager": lambda f: f,
        "graph": tf.function,
        "xla": lambda f: tf.function(f, jit_compile=True),
        "dynamic": lambda f: tf.function(
            f, input_signature=[tf.TensorSpec((None, None, None, shape[-1]))]
        ),
    }[path]
    expected = value_and_gradients(formula, dy)(x)
    actual = wrap(value_and_gradients(lambda t: layer(t, training=True), dy))(x)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-5)

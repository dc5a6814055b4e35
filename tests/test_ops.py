"""The shared building blocks of keras_recalib/layers/_ops.py, where the layers' own tests do not
reach every branch."""

import keras
import numpy as np
import pytest
from contract_utils import value_and_gradients

from keras_recalib.layers import _ops


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("scale", [True, False])
def test_fold_batch_norm_matches_inference_mode(center, scale):
    bn = keras.layers.BatchNormalization(center=center, scale=scale, epsilon=1e-3)
    bn.build((None, 3))
    rng = np.random.default_rng(0)
    for variable in bn.weights:
        low = 0.5 if "variance" in variable.path or "gamma" in variable.path else -1.0
        variable.assign(rng.uniform(low, 1.5, variable.shape))
    z = rng.normal(size=(4, 3)).astype("float32")
    folded_scale, shift = _ops.fold_batch_norm(bn, "float32")
    np.testing.assert_allclose(z * folded_scale + shift, bn(z, training=False), rtol=1e-5)


def test_torch_padding():
    # Symmetric explicit padding only where Keras' "same" would pad asymmetrically.
    assert _ops.torch_padding(3, 2) == (1, "valid")
    assert _ops.torch_padding(7, 2) == (3, "valid")
    assert _ops.torch_padding(3, 1) == (0, "same")
    assert _ops.torch_padding(1, 2) == (0, "same")


def test_refuse_inactive_compares_initializers_by_config():
    class Layer:
        def __init__(self, gamma_initializer="zeros", momentum=0.9):
            pass

    zeros = keras.initializers.serialize(keras.initializers.Zeros())
    _ops.refuse_inactive(Layer, "off=True", gamma_initializer=zeros, momentum=0.9)
    _ops.refuse_inactive(Layer, "off=True", gamma_initializer=keras.initializers.Zeros())
    with pytest.raises(ValueError, match=r"`gamma_initializer` has no effect with off=True"):
        _ops.refuse_inactive(Layer, "off=True", gamma_initializer="ones")
    with pytest.raises(ValueError, match=r"default \(0.9\)\. Received: momentum=0.5"):
        _ops.refuse_inactive(Layer, "off=True", momentum=0.5)


# Plane shapes reaching every formulation of `_plane_conv`: thin planes either way round
# (banded in graph mode), a square one and two larger ones (plain convolution in graph mode);
# XLA always takes the shifted taps, whose gradient contracts over the longer side.
_PLANES = [(2, 40, 5, 1), (2, 3, 33, 1), (2, 20, 20, 1), (1, 70, 66, 1), (1, 67, 80, 1)]


@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("shape", _PLANES, ids=lambda s: f"{s[1]}x{s[2]}")
@pytest.mark.parametrize("k", [3, 7])
def test_plane_conv_matches_the_plain_convolution_and_its_gradients(shape, k, jit):
    import tensorflow as tf

    rng = np.random.default_rng(k)
    plane = tf.constant(rng.standard_normal(shape).astype("float32"))
    taps = tf.constant(rng.standard_normal((k, k)).astype("float32"))
    dy = tf.constant(rng.standard_normal(shape).astype("float32"))

    def plain(p, t):
        return tf.nn.conv2d(p, t[:, :, None, None], 1, "SAME")

    expected = value_and_gradients(plain, dy)(plane, taps)
    actual = tf.function(value_and_gradients(_ops._plane_conv, dy), jit_compile=jit)(plane, taps)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4 * np.abs(e).max())


@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_channel_conv_matches_the_plain_convolution_and_its_gradients(k, jit):
    import tensorflow as tf

    rng = np.random.default_rng(k)
    values = tf.constant(rng.standard_normal((3, 11)).astype("float32"))
    taps = tf.constant(rng.standard_normal(k).astype("float32"))
    dy = tf.constant(rng.standard_normal((3, 11)).astype("float32"))

    def plain(v, t):
        padded = np.pad(v.numpy(), [(0, 0), ((k - 1) // 2, (k - 1) // 2)])
        return tf.constant(sum(padded[:, j : j + 11] * t.numpy()[j] for j in range(k)))

    step = value_and_gradients(_ops.channel_conv, dy)
    actual = tf.function(step, jit_compile=jit)(values, taps)
    np.testing.assert_allclose(actual[0], plain(values, taps), rtol=1e-5, atol=1e-6)
    graph = tf.function(step)(values, taps)  # the convolution's own gradients
    for a, e in zip(actual[1:], graph[1:], strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)

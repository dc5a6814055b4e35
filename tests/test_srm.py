"""SRM against the NumPy reference, and its layer-specific behaviour."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from contract_utils import batch_norm_ops, random_inputs
from references.numpy_srm import srm as srm_reference

import keras_recalib as kr


def srm_with_weights(channels, seed=0, **kwargs):
    layer = kr.StyleRecalibration(**kwargs)
    layer.build((None, None, None, channels))
    rng = np.random.default_rng(seed)
    cfc = rng.normal(size=(channels, 2))
    layer.cfc.assign(cfc)
    bn = None
    if layer.bn is not None:
        bn = (
            rng.uniform(0.5, 1.5, channels),
            rng.normal(size=channels),
            rng.normal(size=channels),
            rng.uniform(0.5, 1.5, channels),
        )
        for variable, value in zip(
            [layer.bn.gamma, layer.bn.beta, layer.bn.moving_mean, layer.bn.moving_variance],
            bn,
            strict=True,
        ):
            variable.assign(value)
    return layer, cfc, bn


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("epsilon", [0.0, 1e-5])
@pytest.mark.parametrize("use_batch_norm", [True, False])
@pytest.mark.parametrize("training", [False, True])
def test_matches_numpy_reference(unbiased, epsilon, use_batch_norm, training):
    layer, cfc, bn = srm_with_weights(
        6, unbiased=unbiased, epsilon=epsilon, use_batch_norm=use_batch_norm
    )
    x = random_inputs((4, 5, 7, 6), seed=1)
    expected = srm_reference(x, cfc, bn, training=training, epsilon=epsilon, unbiased=unbiased)
    np.testing.assert_allclose(layer(x, training=training), expected, rtol=1e-5, atol=1e-5)


def test_initial_gate_is_one_half():
    layer = kr.StyleRecalibration()
    x = random_inputs((2, 4, 4, 5))
    for training in (False, True):
        np.testing.assert_allclose(layer(x, training=training), x * 0.5, rtol=1e-6)


def test_unbiased_std_on_1x1_map_is_zero():
    layer = kr.StyleRecalibration(unbiased=True, epsilon=0.0)
    mean, std = layer.style_features(np.full((2, 1, 1, 3), 7.0, "float32"))
    np.testing.assert_array_equal(std, 0.0)
    np.testing.assert_array_equal(mean, 7.0)


@pytest.mark.tensorflow_only
def test_gradient_is_finite_where_variance_is_zero():
    layer, _, _ = srm_with_weights(3, unbiased=True, epsilon=0.0)
    x = tf.constant(np.full((2, 3, 3, 3), 2.0, "float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(layer(x, training=True))
    assert np.all(np.isfinite(tape.gradient(y, x)))


@pytest.mark.tensorflow_only
def test_inference_folds_batch_norm_into_one_affine():
    layer, cfc, bn = srm_with_weights(4)
    a, b, c = (np.asarray(t) for t in layer.effective_weights())
    gamma, beta, mm, mv = bn
    scale = gamma / np.sqrt(mv + 1e-5)
    np.testing.assert_allclose(a, cfc[:, 0] * scale, rtol=1e-5)
    np.testing.assert_allclose(b, cfc[:, 1] * scale, rtol=1e-5)
    np.testing.assert_allclose(c, beta - mm * scale, rtol=1e-5, atol=1e-6)
    # The inference graph holds no normalisation op, only the folded affine; training does.
    assert batch_norm_ops(layer, 4, training=False) == []
    assert batch_norm_ops(layer, 4, training=True)


def test_frozen_layer_runs_in_inference_mode():
    layer, _, _ = srm_with_weights(4)
    x = random_inputs((3, 4, 4, 4))
    layer.trainable = False
    np.testing.assert_array_equal(layer(x, training=True), layer(x, training=False))


def test_float16_large_values_stay_finite():
    layer, _, _ = srm_with_weights(4, dtype="mixed_float16")
    x = np.full((2, 3, 3, 4), 6e4, "float16")
    x[:, 0, 0, :] = -6e4
    for training in (False, True):
        y = keras.ops.convert_to_numpy(layer(x, training=training))
        assert y.dtype == "float16"
        assert np.all(np.isfinite(np.asarray(y, "float32")))


def test_regulariser_adds_a_loss_and_default_adds_none():
    plain = kr.StyleRecalibration()
    plain(random_inputs((1, 2, 2, 3)))
    assert plain.losses == []
    decayed = kr.StyleRecalibration(kernel_regularizer=keras.regularizers.L2(1e-4))
    decayed.build((None, 2, 2, 3))
    decayed.cfc.assign(np.ones((3, 2)))
    decayed(random_inputs((1, 2, 2, 3)))
    np.testing.assert_allclose(sum(decayed.losses), 1e-4 * 6, rtol=1e-5)


@pytest.mark.tensorflow_only
def test_synchronized_is_passed_to_batch_norm():
    layer = kr.StyleRecalibration(synchronized=True)
    layer.build((None, 4, 4, 3))
    assert layer.bn.synchronized is True
    assert kr.StyleRecalibration(use_batch_norm=False).get_config()["synchronized"] is False


@pytest.mark.tensorflow_only
def test_tiny_epsilon_keeps_gradients_finite():
    layer, _, _ = srm_with_weights(3, unbiased=True, epsilon=1e-50)  # 0 in float32
    x = tf.constant(np.full((2, 3, 3, 3), 2.0, "float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(layer(x, training=True))
    assert np.all(np.isfinite(tape.gradient(y, x)))


# --- Fast paths of the statistics (graph-mode pooling, XLA partial sums) ----------------------

_PATHS = {
    "eager": lambda f: f,
    "graph": tf.function,
    "xla": lambda f: tf.function(f, jit_compile=True),
}


@pytest.mark.parametrize("path", list(_PATHS))
@pytest.mark.parametrize("shape", [(2, 9, 7, 5), (2, 1, 1, 3)], ids=["9x7", "1x1"])
@pytest.mark.tensorflow_only
def test_fast_paths_match_moments_and_autodiff(path, shape):
    from keras_recalib.ops import channel_scale, spatial_moments

    rng = np.random.default_rng(1)
    x = tf.constant((3.0 + rng.standard_normal(shape)).astype("float32"))
    gate = tf.constant(rng.uniform(0.1, 0.9, (shape[0], shape[-1])).astype("float32"))
    w1, w2, dy = (
        tf.constant(rng.standard_normal(s).astype("float32"))
        for s in [(shape[0], shape[-1])] * 2 + [shape]
    )

    def outputs(moments, scale):
        def run(t, g):
            with tf.GradientTape() as tape:
                tape.watch([t, g])
                mean, var = moments(t)
                y = scale(t, g)
                loss = tf.reduce_sum(mean * w1 + var * w2) + tf.reduce_sum(y * dy)
            return (mean, var, y, *tape.gradient(loss, [t, g]))

        return run

    reference = outputs(
        lambda t: tf.nn.moments(t, axes=[1, 2]), lambda t, g: t * g[:, None, None, :]
    )(x, gate)
    fast = _PATHS[path](outputs(spatial_moments, channel_scale))(x, gate)
    for actual, expected in zip(fast, reference, strict=True):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.tensorflow_only
def test_layer_is_the_same_with_static_and_unknown_spatial_size():
    layer, _, _ = srm_with_weights(6, unbiased=True)
    x = random_inputs((3, 8, 5, 6), seed=2)
    for training in (False, True):
        dynamic = tf.function(
            lambda t, training=training: layer(t, training=training),
            input_signature=[tf.TensorSpec((None, None, None, 6))],
        )
        expected = dynamic(x)  # unknown height and width: tf.nn.moments, the reference path
        for path in ("graph", "xla"):
            fn = _PATHS[path](lambda t, training=training: layer(t, training=training))
            np.testing.assert_allclose(fn(x), expected, rtol=1e-5, atol=1e-6)

"""The seam between the layers' mathematics and the backend's speed: `keras_recalib.ops`.

- Equivalence: every dispatched primitive's fast implementation computes what its reference
  implementation computes, forward and gradient, eagerly, in graph mode and under XLA, for
  static and unknown spatial sizes.
- Guards: each fast path is really taken where it should be (the graph's ops, the compiled
  HLO), and the non-public TensorFlow APIs it rests on are still there. These fail when a
  TensorFlow release moves them, instead of XLA silently running 2-4x slower.
- The shared building blocks that the layers' own tests do not reach in every branch.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from contract_utils import random_inputs, value_and_gradients

import keras_recalib as kr
from keras_recalib import _validation as v
from keras_recalib import ops
from keras_recalib._conventions import torch_padding
from keras_recalib.ops import _tensorflow

# The seam's TensorFlow side: fast paths against the reference, traced graphs and HLO.
pytestmark = pytest.mark.tensorflow_only


def _traced_for(runtime):
    """Graph mode traced as `export.convert_tflite` traces (`ops.traced_for(runtime)`)."""

    def wrap(f):
        fn = tf.function(f)

        def call(*tensors):
            with ops.traced_for(runtime):
                return fn(*tensors)

        return call

    return wrap


_MODES = {
    "eager": lambda f: f,
    "graph": tf.function,
    "xla": lambda f: tf.function(f, jit_compile=True),
    "tflite": _traced_for("tflite"),
    "tflite_int8": _traced_for("tflite_int8"),
}


def _rng_tensor(rng, shape, low=None, high=None):
    if low is not None:
        return tf.constant(rng.uniform(low, high, shape).astype("float32"))
    return tf.constant((3.0 + rng.standard_normal(shape)).astype("float32"))


def _cases():
    """primitive name -> (function of tensors, tensors, unknown-spatial signature or None)."""
    rng = np.random.default_rng(0)
    x = _rng_tensor(rng, (2, 9, 7, 5))  # 63 pixels: chunks and a remainder under XLA
    gate = _rng_tensor(rng, (2, 5), 0.1, 0.9)
    spatial = tf.TensorSpec((None, None, None, 5))
    return {
        "spatial_moments": (lambda t: ops.spatial_moments(t), [x], [spatial]),
        "spatial_sum": (lambda t: ops.spatial_sum(t), [x], [spatial]),
        "spatial_mean": (lambda t: ops.spatial_mean(t), [x], [spatial]),
        "axis_moments": (
            lambda t: ops.axis_moments(t, 1),
            [_rng_tensor(rng, (2, 30, 4))],
            [tf.TensorSpec((None, None, 4))],
        ),
        "channel_scale": (lambda t, g: ops.channel_scale(t, g), [x, gate], None),
        "gate_product": (
            lambda t, g: ops.gate_product(t, g),
            [x, _rng_tensor(rng, (2, 9, 7, 1), 0.1, 0.9)],
            None,
        ),
        "store_once": (lambda t: ops.store_once(t), [gate], None),
        "z_pool": (lambda t: ops.z_pool(t, -1), [x], [spatial]),
        "gather": (lambda t: ops.gather(t, np.array([0, 2, 2, 1], "int32"), 1), [x], [spatial]),
        "plane_conv": (
            lambda p, k: ops.plane_conv(p, k),
            [_rng_tensor(rng, (2, 12, 5, 1)), _rng_tensor(rng, (3, 3), -1.0, 1.0)],
            None,
        ),
        "channel_conv": (
            lambda c, k: ops.channel_conv(c, k),
            [_rng_tensor(rng, (3, 11)), _rng_tensor(rng, (5,), -1.0, 1.0)],
            None,
        ),
        "energy_gate": (lambda t: ops.energy_gate(t, 1e-4), [x], [spatial]),
    }


def _outputs_and_gradients(fn, tensors):
    """Every output of `fn` and the gradients of a fixed random projection of them."""
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        out = fn(*tensors)
        out = list(out) if isinstance(out, (tuple, list)) else [out]
        loss = 0.0
        for i, y in enumerate(out):
            weights = tf.cos(tf.range(tf.size(y), dtype=y.dtype) * (0.37 + i))
            loss += tf.reduce_sum(tf.reshape(y, [-1]) * weights)
    return (*out, *tape.gradient(loss, tensors))


def test_every_dispatched_primitive_has_a_case():
    dispatched = {n for n in dir(_tensorflow) if n in ops.__all__} - {"available"}
    assert dispatched <= set(_cases()), dispatched - set(_cases())


@pytest.mark.parametrize("mode", list(_MODES))
@pytest.mark.parametrize("name", sorted(_cases()))
def test_fast_implementation_matches_the_reference(name, mode):
    fn, tensors, _ = _cases()[name]
    with ops.fast_paths(False):
        expected = tf.function(lambda *t: _outputs_and_gradients(fn, list(t)))(*tensors)
    actual = _MODES[mode](lambda *t: _outputs_and_gradients(fn, list(t)))(*tensors)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=2e-5, atol=2e-5 * (1 + np.abs(e).max()))


@pytest.mark.parametrize("name", [n for n, case in sorted(_cases().items()) if case[2]])
def test_fast_implementation_with_an_unknown_spatial_size(name):
    fn, tensors, signature = _cases()[name]
    with ops.fast_paths(False):
        expected = tf.function(lambda *t: _outputs_and_gradients(fn, list(t)))(*tensors)
    for jit in (False, True):
        step = tf.function(
            lambda *t: _outputs_and_gradients(fn, list(t)),
            input_signature=signature,
            jit_compile=jit,
        )
        for a, e in zip(step(*tensors), expected, strict=True):
            np.testing.assert_allclose(a, e, rtol=2e-5, atol=2e-5 * (1 + np.abs(e).max()))


@pytest.mark.parametrize("mode", [m for m in _MODES if m != "tflite"])
def test_fast_moments_match_float64_with_a_large_offset(mode):
    # The two-pass forms (graph mode, int8 TFLite) and XLA's shifted one pass; float TFLite's
    # unshifted one pass has its own bound below.
    rng = np.random.default_rng(0)
    # 9 x 7 = 63 pixels: seven chunks of 8 and a remainder in the XLA path.
    x = (1e3 + 1e-2 * rng.standard_normal((2, 9, 7, 5))).astype("float32")
    exact_mean = x.astype(np.float64).mean(axis=(1, 2))
    exact_var = x.astype(np.float64).var(axis=(1, 2))
    mean, var = _MODES[mode](ops.spatial_moments)(tf.constant(x))
    np.testing.assert_allclose(mean, exact_mean, rtol=1e-6)
    # The pooled path is two-pass like tf.nn.moments: the float32 mean's rounding, squared,
    # bounds its variance error for both. The shifted one-pass XLA path does much better.
    _, reference_var = tf.nn.moments(tf.constant(x), axes=[1, 2])
    reference_error = np.max(np.abs(np.asarray(reference_var, np.float64) - exact_var))
    error = np.max(np.abs(np.asarray(var, np.float64) - exact_var))
    bound = 1e-5 * exact_var.max() if mode == "xla" else 2 * reference_error + 1e-9
    assert error <= bound


@pytest.mark.parametrize("ratio", [0.0, 3.0, 30.0])
def test_tflite_one_pass_moments_error_grows_only_with_the_mean_to_std_ratio(ratio):
    # TFLite's formulation is mean(x^2) - mean(x)^2: its float32 error, relative to the
    # variance, is bounded by a few ulps times 1 + (mean / std)^2. Recalibration gates see BN
    # outputs, whose |mean| is of the order of their std (ratio <= 3 here, within 1e-6).
    rng = np.random.default_rng(1)
    x = (ratio + rng.standard_normal((2, 56, 56, 8))).astype("float32")
    exact_var = x.astype(np.float64).var(axis=(1, 2))
    _, var = _traced_for("tflite")(ops.spatial_moments)(tf.constant(x))
    relative = np.max(np.abs(np.asarray(var, np.float64) - exact_var) / exact_var)
    assert relative <= 3e-7 * (1 + ratio**2) * np.log2(56 * 56)
    assert np.all(np.asarray(var) >= 0)


def test_tflite_moments_are_refused_for_an_unknown_runtime():
    with pytest.raises(ValueError, match="runtime='onnx'"):
        with ops.traced_for("onnx"):
            pass


# Plane shapes reaching every formulation of `plane_conv`: thin planes either way round
# (banded in graph mode), a square one and two larger ones (plain convolution in graph mode);
# XLA always takes the shifted taps, whose gradient contracts over the longer side.
_PLANES = [(2, 40, 5, 1), (2, 3, 33, 1), (2, 20, 20, 1), (1, 70, 66, 1), (1, 67, 80, 1)]


@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("shape", _PLANES, ids=lambda s: f"{s[1]}x{s[2]}")
@pytest.mark.parametrize("k", [3, 7])
def test_plane_conv_matches_the_plain_convolution_and_its_gradients(shape, k, jit):
    rng = np.random.default_rng(k)
    plane = tf.constant(rng.standard_normal(shape).astype("float32"))
    taps = tf.constant(rng.standard_normal((k, k)).astype("float32"))
    dy = tf.constant(rng.standard_normal(shape).astype("float32"))

    def plain(p, t):
        return tf.nn.conv2d(p, t[:, :, None, None], 1, "SAME")

    expected = value_and_gradients(plain, dy)(plane, taps)
    actual = tf.function(value_and_gradients(ops.plane_conv, dy), jit_compile=jit)(plane, taps)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4 * np.abs(e).max())


@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_channel_conv_matches_numpy_and_the_convolution_gradients(k, jit):
    rng = np.random.default_rng(k)
    values = tf.constant(rng.standard_normal((3, 11)).astype("float32"))
    taps = tf.constant(rng.standard_normal(k).astype("float32"))
    dy = tf.constant(rng.standard_normal((3, 11)).astype("float32"))
    padded = np.pad(values.numpy(), [(0, 0), ((k - 1) // 2, (k - 1) // 2)])
    expected = sum(padded[:, j : j + 11] * taps.numpy()[j] for j in range(k))

    step = value_and_gradients(ops.channel_conv, dy)
    actual = tf.function(step, jit_compile=jit)(values, taps)
    np.testing.assert_allclose(actual[0], expected, rtol=1e-5, atol=1e-6)
    with ops.fast_paths(False):
        reference = tf.function(step)(values, taps)  # the convolution's own gradients
    for a, e in zip(actual[1:], reference[1:], strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)


# --- guards: the fast paths are taken -------------------------------------------------------


def test_the_non_public_tensorflow_apis_are_there():
    assert ops.available() == {"xla_context": True, "optimization_barrier": True}


def test_xla_context_is_seen_only_under_jit_compile():
    seen = {}

    def probe(jit):
        def fn(t):
            seen[jit] = _tensorflow.in_xla_context()
            return t + 1.0

        return fn

    for jit in (False, True):
        tf.function(probe(jit), jit_compile=jit)(tf.constant(1.0))
    assert seen == {False: False, True: True}
    assert _tensorflow.in_xla_context() is False  # eager


def _op_types(fn, *tensors, jit=False):
    graph = tf.function(fn, jit_compile=jit).get_concrete_function(*tensors).graph
    return {op.type for op in graph.get_operations()}


def test_graph_mode_pools_and_xla_sums_partials():
    x = tf.constant(random_inputs((2, 8, 8, 4)))
    graph_ops = _op_types(ops.spatial_moments, x)
    assert "AvgPool" in graph_ops and "Mean" not in graph_ops
    xla_ops = _op_types(ops.spatial_moments, x, jit=True)
    assert "AvgPool" not in xla_ops and "StridedSlice" in xla_ops
    with ops.fast_paths(False):
        reference_ops = _op_types(ops.spatial_moments, x)
    assert "AvgPool" not in reference_ops and "Mean" in reference_ops
    # Traced for TFLite: two MEANs; in float no full-size subtraction of the mean, with int8
    # activations the two-pass deviation.
    for runtime, full_size_subtraction in (("tflite", False), ("tflite_int8", True)):
        with ops.traced_for(runtime):
            graph = tf.function(ops.spatial_moments).get_concrete_function(x).graph
        types = [op.type for op in graph.get_operations()]
        assert "AvgPool" not in types and types.count("Mean") == 2, runtime
        full_size = [
            op
            for op in graph.get_operations()
            if op.type == "Sub" and op.outputs[0].shape.as_list() == [2, 8, 8, 4]
        ]
        assert bool(full_size) == full_size_subtraction, runtime


def test_xla_partial_sums_leave_enough_partials():
    # Few partials per image ran 5-8x slower at batch 1-2 (28 partials of a 28x28 map): the
    # chunk divides the count and leaves at least _MIN_PARTIALS partials where the map allows.
    for side, chunk in ((112, 32), (56, 32), (28, 16), (14, 4), (7, 7), (2, 2), (1, 1)):
        count = side * side
        assert _tensorflow._chunk(count) == chunk, side
        assert count % chunk == 0
        if count >= 2 * _tensorflow._MIN_PARTIALS:
            assert count // chunk >= _tensorflow._MIN_PARTIALS, side


def test_thin_planes_take_the_banded_convolution():
    plane = tf.constant(random_inputs((2, 40, 5, 1)))
    taps = tf.constant(random_inputs((7, 7)))
    graph = tf.function(ops.plane_conv).get_concrete_function(plane, taps).graph
    (conv,) = [op for op in graph.get_operations() if op.type == "Conv2D"]
    assert conv.inputs[1].shape.as_list() == [7, 1, 5, 5]  # (k, 1, short, short)


def _hlo(fn, *tensors):
    return tf.function(fn, jit_compile=True).experimental_get_compiler_ir(*tensors)(stage="hlo")


def test_xla_stores_gates_once_behind_a_barrier():
    x = tf.constant(random_inputs((2, 6, 6, 4)))
    gate = tf.constant(np.full((2, 4), 0.5, "float32"))
    assert "opt-barrier" in _hlo(ops.channel_scale, x, gate)
    with ops.fast_paths(False):
        assert "opt-barrier" not in _hlo(ops.channel_scale, x, gate)


def test_a_layer_under_xla_takes_the_fast_paths():
    layer = kr.StyleRecalibration()
    x = tf.constant(random_inputs((2, 6, 6, 8)))
    layer(x)

    def train_step(t):
        with tf.GradientTape() as tape:
            y = layer(t, training=True)
        return y, tape.gradient(y, t)

    hlo = _hlo(train_step, x)
    assert "opt-barrier" in hlo
    assert "AvgPool" in _op_types(lambda t: layer(t, training=False), x)


def test_the_switch_reads_the_environment_at_import():
    code = "from keras_recalib import ops; print(ops.fast_paths_enabled())"
    env = dict(os.environ, KERAS_RECALIB_FAST_PATHS="0", TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_set_fast_paths_refuses_a_non_bool():
    with pytest.raises(ValueError, match=r"Received: enabled='no'"):
        ops.set_fast_paths("no")
    assert ops.fast_paths_enabled() is True


# --- shared building blocks ------------------------------------------------------------------


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
    folded_scale, shift = ops.fold_batch_norm(bn, "float32")
    np.testing.assert_allclose(z * folded_scale + shift, bn(z, training=False), rtol=1e-5)


def test_torch_padding():
    # Symmetric explicit padding only where Keras' "same" would pad asymmetrically.
    assert torch_padding(3, 2) == (1, "valid")
    assert torch_padding(7, 2) == (3, "valid")
    assert torch_padding(3, 1) == (0, "same")
    assert torch_padding(1, 2) == (0, "same")


def test_refuse_inactive_compares_initializers_by_config():
    class Layer:
        def __init__(self, gamma_initializer="zeros", momentum=0.9):
            pass

    zeros = keras.initializers.serialize(keras.initializers.Zeros())
    v.refuse_inactive(Layer, "off=True", gamma_initializer=zeros, momentum=0.9)
    v.refuse_inactive(Layer, "off=True", gamma_initializer=keras.initializers.Zeros())
    with pytest.raises(ValueError, match=r"`gamma_initializer` has no effect with off=True"):
        v.refuse_inactive(Layer, "off=True", gamma_initializer="ones")
    with pytest.raises(ValueError, match=r"default \(0.9\)\. Received: momentum=0.5"):
        v.refuse_inactive(Layer, "off=True", momentum=0.5)

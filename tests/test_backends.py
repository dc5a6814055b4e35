"""What differs between the Keras backends: the seam's reference on every backend, and what a
backend cannot do. Runs under each KERAS_BACKEND (tensorflow, jax, torch)."""

import importlib.util
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
from contract_utils import random_inputs

import keras_recalib as kr
from keras_recalib import ops
from keras_recalib.ops import _reference

BACKEND = keras.backend.backend()


def _two_pass_moments(x, axes):
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=axes, keepdims=True)
    return mean, ((x - mean) ** 2).mean(axis=axes, keepdims=True)


@pytest.mark.parametrize("axes", [(1, 2), (1,)], ids=["spatial", "axis"])
def test_reference_moments_are_two_pass(axes):
    # A mean large against the std: E[x^2] - E[x]^2 (keras.ops.moments) would lose the
    # variance to cancellation in float32; the two-pass reference keeps it.
    x = (1e3 + random_inputs((2, 6, 5, 3), seed=4)).astype("float32")
    tensor = keras.ops.convert_to_tensor(x)
    if axes == (1, 2):
        mean, var = _reference.spatial_moments(tensor)
        mean, var = mean[:, None, None, :], var[:, None, None, :]
    else:
        mean, var = _reference.axis_moments(tensor, 1)
    mean, var = keras.ops.convert_to_numpy(mean), keras.ops.convert_to_numpy(var)
    expected_mean, expected_var = _two_pass_moments(x, axes)
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-6)
    np.testing.assert_allclose(var, expected_var, rtol=1e-4)


@pytest.mark.tensorflow_only
def test_reference_moments_give_tf_nn_moments_numbers():
    import tensorflow as tf

    x = tf.constant((3.0 + random_inputs((2, 7, 9, 4), seed=2)).astype("float32"))
    for reference, expected in [
        (_reference.spatial_moments(x), tf.nn.moments(x, axes=[1, 2])),
        (_reference.axis_moments(x, 2), tf.nn.moments(x, axes=[2], keepdims=True)),
    ]:
        for actual, wanted in zip(reference, expected, strict=True):
            np.testing.assert_allclose(actual, wanted, rtol=1e-6, atol=1e-7)


def test_fast_paths_exist_only_on_tensorflow():
    if BACKEND == "tensorflow":
        assert set(ops.available()) == {"xla_context", "optimization_barrier"}
    else:
        assert ops.available() == {}


@pytest.mark.skipif(BACKEND == "tensorflow", reason="synchronized BN works on TensorFlow")
@pytest.mark.parametrize(
    "cls",
    [kr.StyleRecalibration, kr.ConvBlockAttention, kr.TripletAttention],
    ids=lambda c: c.__name__,
)
def test_synchronized_batch_norm_is_refused_outside_tensorflow(cls):
    layer = cls(synchronized=True)  # the constructor accepts a TensorFlow config
    pattern = rf"`synchronized`.*'{BACKEND}' backend.*Received: synchronized=True"
    with pytest.raises(ValueError, match=pattern):
        layer.build((None, 4, 4, 8))


_OUTPUTS_SCRIPT = """
import sys
import keras
import numpy as np
from contract_utils import random_inputs, randomize_weights
from layer_cases import CASES

outputs = {}
for case in CASES:
    layer = case.cls(**case.kwargs)
    layer.build(case.input_shape)
    randomize_weights(layer)
    x = random_inputs(case.input_shape)
    for training in (False, True):
        y = layer(x, training=training)
        outputs[f"{case.id}-{training}"] = keras.ops.convert_to_numpy(y)
np.savez(sys.argv[1], backend=keras.backend.backend(), **outputs)
"""


@pytest.mark.slow
@pytest.mark.tensorflow_only  # one run covers every backend: in the TensorFlow job
def test_every_layer_computes_the_same_on_every_installed_backend(tmp_path):
    """Each contract case, with the same weights and input, in a fresh process per backend
    (the backend is fixed at import): the outputs agree with TensorFlow's."""
    root = pathlib.Path(__file__).resolve().parents[1]
    backends = [
        name
        for name, module in [("tensorflow", "tensorflow"), ("jax", "jax"), ("torch", "torch")]
        if importlib.util.find_spec(module) is not None
    ]
    if len(backends) < 2:
        pytest.skip(f"only {backends} installed")
    results = {}
    for name in backends:
        path = tmp_path / f"{name}.npz"
        env = {
            **os.environ,
            "KERAS_BACKEND": name,
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONPATH": os.pathsep.join([str(root), str(root / "tests")]),
        }
        done = subprocess.run(
            [sys.executable, "-c", _OUTPUTS_SCRIPT, str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        with np.load(path) as data:
            assert str(data["backend"]) == name
            results[name] = {k: data[k] for k in data.files if k != "backend"}
    first, *others = backends
    for other in others:
        assert results[other].keys() == results[first].keys()
        for key, expected in results[first].items():
            np.testing.assert_allclose(
                results[other][key], expected, rtol=1e-5, atol=1e-5, err_msg=f"{other}: {key}"
            )

"""The shared building blocks of keras_recalib/layers/_ops.py, where the layers' own tests do not
reach every branch."""

import keras
import numpy as np
import pytest

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

"""Gate inspection (`keras_recalib.inspect`) through the layers' one gate API."""

import keras
import numpy as np
import pytest

import keras_recalib as kr
from keras_recalib import inspect


def gated_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 1, name="stem")(inputs)
    srm = kr.StyleRecalibration(name="srm")
    x = srm(x)
    srm.cfc.assign(np.random.default_rng(0).normal(size=(6, 2)))
    inner_inputs = keras.Input((8, 8, 6))
    inner = keras.Model(inner_inputs, kr.StyleRecalibration(name="inner_srm")(inner_inputs))
    return keras.Model(inputs, inner(x))


def test_gates_match_the_layer_and_reach_nested_models():
    model = gated_model()
    images = np.random.default_rng(1).normal(size=(10, 8, 8, 3)).astype("float32")
    results = inspect.gates(model, images)
    assert [r.name for r in results] == ["srm", "inner_srm"]
    srm = model.get_layer("srm")
    features = model.get_layer("stem")(images)
    expected = np.asarray(srm.gates(features)["channel"])[:, 0, 0, :]
    np.testing.assert_allclose(results[0].gate, expected, rtol=1e-6)
    np.testing.assert_allclose(results[1].gate, 0.5, rtol=1e-6)  # zero-initialised SRM
    details = results[0].details
    assert details["style_std"].shape == (10, 6) and details["mean_weight"].shape == (6,)
    assert list(results[0].gates) == ["channel"]
    assert "srm" in inspect.summary(results)


def test_mixed_gates_are_summarised_by_the_least_squares_gain():
    inputs = keras.Input((6, 6, 4))
    rescale = keras.layers.Rescaling(0.25)  # not a recalibration layer: ignored
    model = keras.Model(inputs, kr.SimAM()(rescale(inputs)))
    images = np.random.default_rng(2).normal(size=(5, 6, 6, 4)).astype("float32")
    (entry,) = inspect.gates(model, images)
    x = images * 0.25
    gate = entry.gates["element"]
    assert gate.shape == x.shape
    expected = np.sum(x * x * gate, axis=(1, 2)) / np.sum(x * x, axis=(1, 2))
    np.testing.assert_allclose(entry.gate, expected, rtol=1e-5)
    assert entry.details == {}
    with pytest.raises(ValueError, match="no keras_recalib layers"):
        inspect.gates(keras.Model(inputs, rescale(inputs)), images)


def test_a_layer_that_is_not_a_gate_has_no_gates():
    inputs = keras.Input((8, 8, 4))
    model = keras.Model(inputs, kr.SelfCalibratedConv2D()(inputs))
    (entry,) = inspect.gates(model, np.ones((2, 8, 8, 4), "float32"))
    assert entry.gate is None and entry.gates == {}
    assert "(not a gate)" in inspect.summary([entry])


def test_channel_correlation_is_a_correlation_matrix():
    gate = np.random.default_rng(0).uniform(size=(50, 5))
    gate[:, 4] = 0.5  # a constant channel correlates with nothing
    corr = inspect.channel_correlation(gate)
    np.testing.assert_allclose(np.diag(corr)[:4], 1.0, rtol=1e-6)
    np.testing.assert_allclose(corr, corr.T)
    assert np.all(corr[4] == 0)
    np.testing.assert_allclose(corr[:4, :4], np.corrcoef(gate[:, :4].T), atol=1e-9)

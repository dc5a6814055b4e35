"""load_torch_weights: name mapping without torch, numerical parity with torch when present."""

import numpy as np
import pytest
from contract_utils import random_inputs

import keras_recalib as kr
from keras_recalib.convert import load_torch_weights


def srm_state(channels, seed=0, layout="official"):
    rng = np.random.default_rng(seed)
    cfc = rng.normal(size=(channels, 2)).astype("float32")
    state = {
        "bn.weight": rng.uniform(0.5, 1.5, channels).astype("float32"),
        "bn.bias": rng.normal(size=channels).astype("float32"),
        "bn.running_mean": rng.normal(size=channels).astype("float32"),
        "bn.running_var": rng.uniform(0.5, 1.5, channels).astype("float32"),
        "bn.num_batches_tracked": np.array(7),
    }
    state["cfc" if layout == "official" else "cfc.weight"] = (
        cfc if layout == "official" else cfc[:, None, :]
    )
    return state, cfc


def built_srm(channels, **kwargs):
    layer = kr.StyleRecalibration(**kwargs)
    layer.build((None, None, None, channels))
    return layer


@pytest.mark.parametrize("layout", ["official", "seed_conv1d"])
def test_srm_both_layouts_load(layout):
    state, cfc = srm_state(5, layout=layout)
    layer = load_torch_weights(built_srm(5), state)
    np.testing.assert_array_equal(layer.cfc, cfc)
    np.testing.assert_array_equal(layer.bn.gamma, state["bn.weight"])
    np.testing.assert_array_equal(layer.bn.moving_variance, state["bn.running_var"])


def test_srm_without_num_batches_tracked_loads():
    state, _ = srm_state(3)
    del state["bn.num_batches_tracked"]
    load_torch_weights(built_srm(3), state)


def test_missing_extra_and_misshaped_keys_are_all_listed():
    state, _ = srm_state(4)
    del state["bn.bias"]
    state["bn.running_var"] = np.ones(5, "float32")
    state["fc.weight"] = np.ones((2, 2), "float32")
    layer = built_srm(4)
    before = [np.array(w) for w in layer.weights]
    with pytest.raises(ValueError) as info:
        load_torch_weights(layer, state)
    message = str(info.value)
    assert "missing key 'bn.bias'" in message
    assert "'bn.running_var' has shape (5,), expected (4,)" in message
    assert "unexpected key 'fc.weight'" in message
    # Nothing was written: a failed load leaves the layer as it was.
    for old, new in zip(before, layer.weights, strict=True):
        np.testing.assert_array_equal(old, new)


def test_non_strict_loads_what_fits_into_a_layer_and_reports_the_rest():
    state, cfc = srm_state(4)
    del state["bn.bias"]
    state["bn.running_var"] = np.ones(5, "float32")
    state["fc.weight"] = np.ones((2, 2), "float32")
    layer = built_srm(4)
    beta, variance = np.array(layer.bn.beta), np.array(layer.bn.moving_variance)
    report = load_torch_weights(layer, state, strict=False)
    assert report.loaded == ("cfc", "bn.weight", "bn.running_mean")
    assert report.missing == ("bn.bias",)
    assert report.mismatched == (("bn.running_var", (5,), (4,)),)
    assert report.skipped == ("fc.weight",)
    assert set(report.by_module()) == {layer.name, "fc"}
    np.testing.assert_array_equal(layer.cfc, cfc)
    np.testing.assert_array_equal(layer.bn.gamma, state["bn.weight"])
    np.testing.assert_array_equal(layer.bn.beta, beta)
    np.testing.assert_array_equal(layer.bn.moving_variance, variance)


def test_non_strict_report_of_a_complete_state_dict_fits():
    state, _ = srm_state(3)
    report = load_torch_weights(built_srm(3), state, strict=False)
    assert report.fits and len(report.loaded) == 5
    assert report.summary().startswith("loaded 5 tensors; not loaded")
    assert "0 missing, 0 mis-shaped; unused keys of the state dict: 0" in report.summary()


def test_unbuilt_and_unsupported_layers_are_refused():
    state, _ = srm_state(4)
    with pytest.raises(ValueError, match="not built"):
        load_torch_weights(kr.StyleRecalibration(), state)
    import keras

    dense = keras.layers.Dense(2)
    with pytest.raises(ValueError, match="No PyTorch weight mapping for Dense"):
        load_torch_weights(dense, state)


# --- numerical parity with PyTorch (optional: skipped without torch) ---------------------------


def torch_srm(channels, variant, epsilon):
    """The official SRMLayer's computation (variant "official") or the seeds' Conv1d one."""
    torch = pytest.importorskip("torch")
    from references.torch_modules import SeedSRM, SRMLayer

    module = SRMLayer(channels, eps=epsilon) if variant == "official" else SeedSRM(channels)
    return torch, module


@pytest.mark.parametrize("variant,epsilon", [("official", 1e-5), ("official", 0.0), ("seed", 0.0)])
@pytest.mark.parametrize("train", [False, True])
def test_srm_matches_pytorch(variant, epsilon, train):
    channels = 6
    torch, module = torch_srm(channels, variant, epsilon)
    state, _ = srm_state(channels, seed=3, layout="official" if variant == "official" else "seed")
    module.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    module.train(train)
    layer = load_torch_weights(built_srm(channels, unbiased=True, epsilon=epsilon), state)
    x = random_inputs((4, 5, 6, channels), seed=2)
    with torch.no_grad():
        expected = module(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(layer(x, training=train), expected, rtol=1e-5, atol=1e-5)
    if train:
        # Moving statistics follow PyTorch's update (momentum 0.1 == Keras 0.9).
        np.testing.assert_allclose(
            layer.bn.moving_mean, module.bn.running_mean, rtol=1e-5, atol=1e-6
        )
        # The running variance differs by design: PyTorch averages the unbiased batch
        # variance, Keras' BatchNormalization the biased one (README, "Known differences").
        n = x.shape[0]
        torch_update = (np.asarray(module.bn.running_var) - 0.9 * state["bn.running_var"]) / 0.1
        keras_update = (np.asarray(layer.bn.moving_variance) - 0.9 * state["bn.running_var"]) / 0.1
        np.testing.assert_allclose(keras_update * n / (n - 1), torch_update, rtol=1e-4, atol=1e-5)

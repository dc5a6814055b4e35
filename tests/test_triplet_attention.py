"""Triplet Attention against a NumPy reference and PyTorch, and its specific behaviour."""

import keras
import numpy as np
import pytest
from contract_utils import random_inputs
from references.numpy_spatial import triplet_attention as triplet_reference

import keras_recalib as kr
from keras_recalib.convert import load_torch_weights


def random_state(kernel_size, branches=("cw", "hc", "hw"), seed=0):
    """A state dict named as the root `triplet_attention.py` names it."""
    rng = np.random.default_rng(seed)
    state = {}
    for name in branches:
        p = f"{name}.conv."
        state[p + "conv.weight"] = rng.normal(
            scale=0.3, size=(1, 2, kernel_size, kernel_size)
        ).astype("float32")
        state[p + "bn.weight"] = rng.uniform(0.5, 1.5, 1).astype("float32")
        state[p + "bn.bias"] = rng.normal(scale=0.5, size=1).astype("float32")
        state[p + "bn.running_mean"] = rng.normal(scale=0.5, size=1).astype("float32")
        state[p + "bn.running_var"] = rng.uniform(0.5, 1.5, 1).astype("float32")
        state[p + "bn.num_batches_tracked"] = np.array(5)
    return state


def models_layout(state):
    """The same weights under MODELS/triplet_attention.py's names."""
    names = {"cw.conv.": "ChannelGateH.spatial.", "hc.conv.": "ChannelGateW.spatial."}
    names["hw.conv."] = "SpatialGate.spatial."
    renamed = {}
    for key, value in state.items():
        for old, new in names.items():
            if key.startswith(old):
                renamed[new + key[len(old) :]] = value
    return renamed


def built_triplet(channels, **kwargs):
    layer = kr.TripletAttention(**kwargs)
    layer.build((None, None, None, channels))
    return layer


def assign_by_hand(layer, state):
    for name in layer.branch_names:
        p = f"{name}.conv."
        # torch (out, in, kh, kw) -> Keras (kh, kw, in, out), without the package's loader.
        kernel = state[p + "conv.weight"].transpose(2, 3, 1, 0)
        getattr(layer, f"{name}_kernel").assign(kernel)
        bn = getattr(layer, f"{name}_bn")
        bn.gamma.assign(state[p + "bn.weight"])
        bn.beta.assign(state[p + "bn.bias"])
        bn.moving_mean.assign(state[p + "bn.running_mean"])
        bn.moving_variance.assign(state[p + "bn.running_var"])


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("kernel_size,use_spatial", [(7, True), (3, False)])
def test_matches_numpy_reference(training, kernel_size, use_spatial):
    channels = 6
    layer = built_triplet(channels, kernel_size=kernel_size, use_spatial=use_spatial)
    state = random_state(kernel_size, layer.branch_names, seed=1)
    assign_by_hand(layer, state)
    # Height, width and channels all differ so that a swapped axis cannot go unnoticed.
    x = random_inputs((2, 5, 7, channels), seed=2)
    expected = triplet_reference(x, state, training=training, use_spatial=use_spatial)
    np.testing.assert_allclose(layer(x, training=training), expected, rtol=1e-5, atol=1e-5)


def test_branch_gates_broadcast_over_the_pooled_axis():
    layer = built_triplet(4)
    x = random_inputs((2, 5, 7, 4))
    shapes = {name: tuple(gate.shape) for name, gate in layer.gates(x).items()}
    assert shapes == {"cw": (2, 1, 7, 4), "hc": (2, 5, 1, 4), "hw": (2, 5, 7, 1)}


def test_parameter_count_does_not_depend_on_channels():
    for channels in (3, 64):
        for use_spatial, branches in ((True, 3), (False, 2)):
            layer = built_triplet(channels, kernel_size=7, use_spatial=use_spatial)
            trainable = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
            assert trainable == branches * (2 * 7 * 7 + 2)
    assert not hasattr(built_triplet(4, use_spatial=False), "hw_kernel")


def test_defaults_follow_the_official_code():
    layer = kr.TripletAttention()
    assert (layer.kernel_size, layer.use_spatial, layer.momentum) == (7, True, 0.99)
    init = layer.kernel_initializer
    assert isinstance(init, keras.initializers.VarianceScaling)
    assert (init.scale, init.mode, init.distribution) == (2.0, "fan_out", "untruncated_normal")
    assert kr.TripletAttention.from_config(layer.get_config()).get_config() == layer.get_config()
    layer.build((None, None, None, 4))
    # MODELS/resnet.py zeroes the "SpatialGate" BatchNorm's scale only.
    np.testing.assert_array_equal(layer.hw_bn.gamma, [0.0])
    np.testing.assert_array_equal(layer.cw_bn.gamma, [1.0])
    np.testing.assert_array_equal(layer.hc_bn.gamma, [1.0])
    kernels = [np.asarray(getattr(layer, f"{n}_kernel")) for n in layer.branch_names]
    assert not np.allclose(kernels[0], kernels[1]) and not np.allclose(kernels[1], kernels[2])
    ones = built_triplet(4, spatial_gamma_initializer="ones")
    np.testing.assert_array_equal(ones.hw_bn.gamma, [1.0])


def test_even_kernel_size_and_missing_gamma_initializer_are_refused():
    with pytest.raises(ValueError, match=r"`kernel_size` must be an odd integer.*kernel_size=4"):
        kr.TripletAttention(kernel_size=4)
    with pytest.raises(ValueError, match=r"`spatial_gamma_initializer`.*Received: .*=None"):
        kr.TripletAttention(spatial_gamma_initializer=None)


def test_spatial_gamma_initializer_needs_the_spatial_branch():
    pattern = r"`spatial_gamma_initializer` has no effect with use_spatial=False.*Received: "
    with pytest.raises(ValueError, match=pattern + "spatial_gamma_initializer='ones'"):
        kr.TripletAttention(use_spatial=False, spatial_gamma_initializer="ones")
    layer = kr.TripletAttention(use_spatial=False, spatial_gamma_initializer="zeros")
    config = layer.get_config()
    assert kr.TripletAttention.from_config(config).get_config() == config
    config["spatial_gamma_initializer"] = "ones"
    with pytest.raises(ValueError, match=pattern):
        kr.TripletAttention.from_config(config)


def test_kernel_initializer_none_is_the_official_fan_out_normal():
    init = kr.TripletAttention(kernel_initializer=None).kernel_initializer
    assert (init.scale, init.mode, init.distribution) == (2.0, "fan_out", "untruncated_normal")
    assert kr.TripletAttention(kernel_initializer="ones").kernel_initializer.get_config() == {}


def test_frozen_layer_runs_in_inference_mode():
    layer = built_triplet(4)
    load_torch_weights(layer, random_state(7))
    layer.trainable = False
    x = random_inputs((3, 4, 5, 4))
    np.testing.assert_array_equal(layer(x, training=True), layer(x, training=False))


def test_loader_refuses_a_spatial_branch_the_layer_lacks():
    with pytest.raises(ValueError, match="unexpected key 'hw.conv.conv.weight'"):
        load_torch_weights(built_triplet(4, use_spatial=False), random_state(7))
    with pytest.raises(ValueError, match=r"'cw.conv.conv.weight' has shape \(1, 2, 7, 7\)"):
        load_torch_weights(built_triplet(4, kernel_size=3), random_state(7))


# --- numerical parity with PyTorch (skipped without torch) -----------------------------------


def torch_triplet(kernel_size, no_spatial, layout):
    torch = pytest.importorskip("torch")
    from references.torch_modules import TripletAttention

    return torch, TripletAttention(kernel_size, no_spatial, layout)


@pytest.mark.parametrize(
    "kernel_size,no_spatial,layout", [(7, False, "root"), (3, True, "root"), (5, False, "models")]
)
@pytest.mark.parametrize("train", [False, True])
def test_matches_pytorch(kernel_size, no_spatial, layout, train):
    channels = 6
    torch, module = torch_triplet(kernel_size, no_spatial, layout)
    state = random_state(kernel_size, ("cw", "hc") if no_spatial else ("cw", "hc", "hw"), seed=3)
    if layout == "models":
        state = models_layout(state)
    module.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    module.train(train)
    layer = load_torch_weights(
        built_triplet(channels, kernel_size=kernel_size, use_spatial=not no_spatial), state
    )
    x = random_inputs((3, 5, 7, channels), seed=4)
    with torch.no_grad():
        expected = module(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(layer(x, training=train), expected, rtol=1e-5, atol=1e-5)
    if train:
        gate = module.cw if layout == "root" else module.ChannelGateH
        bn = gate.conv.bn if layout == "root" else gate.spatial.bn
        np.testing.assert_allclose(layer.cw_bn.moving_mean, bn.running_mean, rtol=1e-5, atol=1e-6)

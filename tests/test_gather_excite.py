"""Gather-Excite against a NumPy reference and PyTorch re-implementations, and its options."""

import keras
import numpy as np
import pytest
from contract_utils import random_inputs
from references.numpy_channel import gather_excite as ge_reference
from references.numpy_common import sigmoid

import keras_recalib as kr
from keras_recalib.convert import load_torch_weights


def randomised(layer, shape, seed=0):
    if not layer.built:
        layer.build(shape)
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        if "variance" in variable.path or "gamma" in variable.path:
            value = rng.uniform(0.5, 1.5, variable.shape)
        else:
            value = rng.normal(size=variable.shape)
        variable.assign(value)
    return layer


CONFIGS = [
    {},
    {"extent": 2},
    {"extent": 4},
    {"extent": 8, "use_mlp": True, "reduction": 2},
    {"parametric": True},
    {"parametric": True, "use_mlp": True, "reduction": 4},
    {"extent": 2, "parametric": True},
    {"extent": 4, "parametric": True, "use_mlp": True, "reduction": 2},
]


@pytest.mark.parametrize(
    "kwargs", CONFIGS, ids=lambda k: "-".join(f"{a}={b}" for a, b in k.items())
)
@pytest.mark.parametrize("training", [False, True])
def test_matches_numpy_reference(kwargs, training):
    shape = (3, 7, 5, 8)
    layer = randomised(kr.GatherExcite(**kwargs), shape)
    x = random_inputs(shape, seed=3)
    expected = ge_reference(layer, x, training)
    np.testing.assert_allclose(layer(x, training=training), expected, rtol=1e-5, atol=1e-5)


def test_global_theta_minus_is_sigmoid_of_the_mean():
    x = random_inputs((2, 4, 5, 3))
    gate = sigmoid(x.astype("float64").mean(axis=(1, 2), keepdims=True))
    np.testing.assert_allclose(kr.get("ge")(x), x * gate, rtol=1e-5)


def test_context_sizes():
    x = random_inputs((1, 7, 13, 2))
    for extent, size in [(2, (4, 7)), (4, (2, 4)), (8, (1, 2))]:
        for parametric in (False, True):
            layer = kr.GatherExcite(extent=extent, parametric=parametric)
            layer.build(x.shape)
            assert tuple(layer.gather(x).shape[1:3]) == size


@pytest.mark.parametrize(
    "kwargs,expected",
    [
        ({}, 0),
        ({"extent": 4}, 0),
        ({"use_mlp": True}, 2 * 64 * 4 + 4 + 64),
        ({"parametric": True}, 64 * 7 * 7 + 2 * 64),
        ({"parametric": True, "use_mlp": True}, 64 * 7 * 7 + 2 * 64 + 2 * 64 * 4 + 4 + 64),
        ({"extent": 8, "parametric": True}, 3 * (9 * 64 + 2 * 64)),
    ],
)
def test_parameter_counts(kwargs, expected):
    layer = kr.GatherExcite(**kwargs)
    layer.build((None, 7, 7, 64))
    assert sum(int(np.prod(w.shape)) for w in layer.trainable_weights) == expected


def test_parametric_global_needs_a_static_spatial_size():
    with pytest.raises(ValueError, match=r"static spatial size.*Received: input_shape=\(None"):
        kr.GatherExcite(parametric=True)(keras.Input((None, None, 4)))
    layer = kr.GatherExcite(parametric=True)
    layer.build((None, 5, 6, 4))
    with pytest.raises(ValueError, match=r"built for a spatial size.*\(5, 6\)"):
        layer(random_inputs((2, 4, 6, 4)))
    # Integer extents are size-agnostic.
    kr.GatherExcite(extent=2, parametric=True)(keras.Input((None, None, 4)))


@pytest.mark.tensorflow_only
def test_parametric_global_in_a_fixed_size_model_exports_to_tflite(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from contract_utils import convert_builtins_only, tflite_run

    inputs = keras.Input((5, 6, 8))
    layer = kr.GatherExcite(parametric=True, use_mlp=True, reduction=2)
    model = keras.Model(inputs, layer(inputs))
    randomised(layer, (None, 5, 6, 8))
    model.export(str(tmp_path / "saved"), verbose=False)
    x = random_inputs((2, 5, 6, 8))
    np.testing.assert_allclose(
        tflite_run(convert_builtins_only(tmp_path / "saved"), x), model(x), atol=1e-5
    )


def test_extent_is_normalised_and_serialised():
    assert kr.GatherExcite(extent="GLOBAL").get_config()["extent"] == "global"
    assert kr.GatherExcite(extent=4).get_config()["extent"] == 4
    extent = kr.GatherExcite(extent=np.int64(4)).get_config()["extent"]
    assert extent == 4 and type(extent) is int
    with pytest.raises(ValueError, match=r"`extent`.*Received: extent=True"):
        kr.GatherExcite(extent=True)
    with pytest.raises(ValueError, match=r"`extent`.*Received: extent=np.int64\(6\)"):
        kr.GatherExcite(extent=np.int64(6))


@pytest.mark.parametrize(
    "kwargs,name,reason",
    [
        ({"synchronized": True}, "synchronized", "parametric=False"),
        ({"momentum": 0.99, "use_mlp": True}, "momentum", "parametric=False"),
        ({"norm_epsilon": 1e-3, "extent": 2}, "norm_epsilon", "parametric=False"),
        ({"reduction": 4, "parametric": True}, "reduction", "use_mlp=False"),
        ({"kernel_initializer": "glorot_uniform"}, "kernel_initializer", "parametric=False and"),
        ({"kernel_regularizer": "l2", "extent": 4}, "kernel_regularizer", "parametric=False and"),
    ],
)
def test_arguments_without_effect_are_refused(kwargs, name, reason):
    pattern = rf"`{name}` has no effect with {reason}.*Received: {name}="
    with pytest.raises(ValueError, match=pattern):
        kr.GatherExcite(**kwargs)
    # Through a config too: get_config holds the defaults of the inactive arguments.
    config = kr.GatherExcite(**{k: v for k, v in kwargs.items() if k != name}).get_config()
    kr.GatherExcite.from_config(config)
    config[name] = kwargs[name]
    with pytest.raises(ValueError, match=pattern):
        kr.GatherExcite.from_config(config)


def test_active_arguments_are_accepted():
    layer = kr.GatherExcite(
        parametric=True, use_mlp=True, reduction=4, momentum=0.99, synchronized=True
    )
    assert kr.GatherExcite.from_config(layer.get_config()).get_config() == layer.get_config()
    kr.GatherExcite(use_mlp=True, kernel_initializer="glorot_uniform", kernel_regularizer="l2")
    kr.GatherExcite(parametric=True, kernel_initializer="glorot_uniform")
    # The defaults, given explicitly or as the config dict get_config wrote, are no conflict.
    he_normal = keras.initializers.serialize(keras.initializers.HeNormal())
    kr.GatherExcite(momentum=0.9, reduction=16, kernel_initializer=he_normal)


# --- PyTorch parity ------------------------------------------------------------------------------


def torch_modules():
    torch = pytest.importorskip("torch")
    from references.torch_modules import LocalGE, SRMRepoGELayer

    return torch, SRMRepoGELayer, LocalGE


def random_state(module, seed):
    rng = np.random.default_rng(seed)
    state = {}
    for key, value in module.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = np.array(3)
        elif key.endswith(("running_var", "norm1.weight", "norm2.weight", "1.weight")) and (
            value.ndim == 1
        ):
            state[key] = rng.uniform(0.5, 1.5, value.shape).astype("float32")
        else:
            state[key] = rng.normal(size=value.shape).astype("float32")
    return state


def run_torch(torch, module, state, x, train):
    module.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    module.train(train)
    with torch.no_grad():
        return module(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)


@pytest.mark.parametrize("train", [False, True])
def test_srm_repository_gelayer_loads_with_its_bias_folded(train):
    torch, SRMRepoGELayer, _ = torch_modules()
    channels, size = 6, 5
    module = SRMRepoGELayer(channels, size)
    state = random_state(module, seed=1)
    assert "conv.0.bias" in state
    x = random_inputs((4, size, size, channels), seed=2)
    expected = run_torch(torch, module, state, x, train)
    layer = kr.GatherExcite(parametric=True)
    layer.build((None, size, size, channels))
    load_torch_weights(layer, state)
    np.testing.assert_allclose(layer(x, training=train), expected, rtol=1e-5, atol=1e-5)
    if train:
        # The folded bias stays folded through the moving-average update.
        np.testing.assert_allclose(
            layer.gather_bns[0].moving_mean,
            module.conv[1].running_mean.numpy() - state["conv.0.bias"],
            rtol=1e-5,
            atol=1e-5,
        )


@pytest.mark.parametrize(
    "extent,parametric,use_mlp",
    [(2, False, False), (4, False, True), (2, True, False), (4, True, True)],
)
@pytest.mark.parametrize("train", [False, True])
def test_local_extents_match_pytorch(extent, parametric, use_mlp, train):
    torch, _, LocalGE = torch_modules()
    channels = 8
    module = LocalGE(channels, extent, parametric, hidden=2 if use_mlp else None)
    state = random_state(module, seed=4)
    x = random_inputs((3, 7, 10, channels), seed=5)
    expected = run_torch(torch, module, state, x, train)
    mlp = {"use_mlp": True, "reduction": 4} if use_mlp else {}
    layer = kr.GatherExcite(extent=extent, parametric=parametric, **mlp)
    layer.build((None, None, None, channels))
    load_torch_weights(layer, state)
    np.testing.assert_allclose(layer(x, training=train), expected, rtol=1e-5, atol=1e-5)


def test_loader_lists_missing_and_misshaped_keys():
    layer = kr.GatherExcite(parametric=True, use_mlp=True)
    layer.build((None, 4, 4, 32))
    state = {"conv.0.weight": np.zeros((32, 1, 3, 3), "float32")}
    with pytest.raises(ValueError) as info:
        load_torch_weights(layer, state)
    message = str(info.value)
    assert "'conv.0.weight' has shape (32, 1, 3, 3), expected (32, 1, 4, 4)" in message
    assert "missing key 'conv.1.running_mean'" in message
    assert "missing key 'mlp.fc1.weight'" in message

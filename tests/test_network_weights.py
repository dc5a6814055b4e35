"""PyTorch checkpoints of whole ResNets: key mapping without torch, logits parity with torch."""

import keras
import numpy as np
import pytest

import keras_recalib as kr
from keras_recalib.convert import load_torch_weights
from keras_recalib.models import cifar_resnet, resnet

# --- the key mapping, from the Keras model alone ------------------------------------------------


def expected_state_shapes(model):
    """PyTorch key -> shape for a `resnet(...)` model, written from torchvision's naming."""
    shapes = {}
    for layer in model.layers:
        prefix = layer.name.replace("_", ".") + "."
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            shapes[prefix + "weight"] = (cout, cin, kh, kw)
        elif isinstance(layer, keras.layers.BatchNormalization):
            for key in ("weight", "bias", "running_mean", "running_var"):
                shapes[prefix + key] = (layer.gamma.shape[0],)
        elif isinstance(layer, keras.layers.Dense):
            cin, cout = layer.kernel.shape
            shapes[prefix + "weight"] = (cout, cin)
            shapes[prefix + "bias"] = (cout,)
        elif isinstance(layer, kr.StyleRecalibration):
            # Official SRMLayer: cfc (C, 2) and a BatchNorm `bn`.
            channels = layer.cfc.shape[0]
            shapes[prefix + "cfc"] = (channels, 2)
            for key in ("weight", "bias", "running_mean", "running_var"):
                shapes[prefix + "bn." + key] = (channels,)
        else:
            assert not layer.weights, layer.name
    return shapes


def random_state(shapes, seed=0):
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 1.5, shape).astype("float32")
        else:
            state[key] = rng.normal(size=shape).astype("float32")
        if key.endswith("running_mean"):
            state[key.replace("running_mean", "num_batches_tracked")] = np.array(3)
    return state


@pytest.fixture(scope="module")
def srm_resnet18():
    return resnet(18, "srm", num_classes=7, input_shape=(None, None, 3))


def test_torchvision_keys_of_a_resnet18(srm_resnet18):
    keys = set(expected_state_shapes(srm_resnet18))
    for key in [
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.conv1.weight",
        "layer1.1.bn2.bias",
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.running_mean",
        "layer4.1.rclb.cfc",
        "layer4.1.rclb.bn.weight",
        "fc.weight",
        "fc.bias",
    ]:
        assert key in keys
    assert "layer1.0.downsample.0.weight" not in keys  # 64 -> 64, stride 1: identity
    # torchvision resnet18 has 102 parameter/buffer entries besides num_batches_tracked;
    # SRM adds 5 per block (cfc and four BN entries), 8 blocks.
    assert len(keys) == 102 + 5 * 8


def test_synthetic_state_dict_loads_into_the_right_variables(srm_resnet18):
    model = srm_resnet18
    state = random_state(expected_state_shapes(model), seed=1)
    assert load_torch_weights(model, state) is model
    np.testing.assert_array_equal(
        model.get_layer("conv1").kernel, state["conv1.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(
        model.get_layer("layer2_0_downsample_1").moving_variance,
        state["layer2.0.downsample.1.running_var"],
    )
    np.testing.assert_array_equal(model.get_layer("layer3_1_rclb").cfc, state["layer3.1.rclb.cfc"])
    np.testing.assert_array_equal(
        model.get_layer("layer3_1_rclb").bn.beta, state["layer3.1.rclb.bn.bias"]
    )
    np.testing.assert_array_equal(model.get_layer("fc").kernel, state["fc.weight"].T)
    np.testing.assert_array_equal(model.get_layer("fc").bias, state["fc.bias"])


def test_plain_cifar_resnet_loads_without_num_batches_tracked():
    model = cifar_resnet(8, num_classes=3)
    state = random_state(expected_state_shapes(model))
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    load_torch_weights(model, state)
    np.testing.assert_array_equal(model.get_layer("bn1").gamma, state["bn1.weight"])


def test_every_bad_key_is_listed_in_one_error_and_nothing_is_written(srm_resnet18):
    model = srm_resnet18
    state = random_state(expected_state_shapes(model), seed=2)
    del state["layer1.0.conv2.weight"]
    del state["layer2.1.rclb.cfc"]
    state["layer3.0.downsample.1.weight"] = np.ones(7, "float32")
    state["fc.weight"] = np.ones((7, 3), "float32")
    state["layer1.0.se.fc.0.weight"] = np.ones((4, 64), "float32")
    before = [np.array(w) for w in model.weights]
    with pytest.raises(ValueError) as info:
        load_torch_weights(model, state)
    message = str(info.value)
    assert "missing key 'layer1.0.conv2.weight'" in message
    assert "missing key 'layer2.1.rclb.cfc'" in message
    assert "'layer3.0.downsample.1.weight' has shape (7,), expected (256,)" in message
    assert "'fc.weight' has shape (7, 3), expected (7, 512)" in message
    assert "unexpected key 'layer1.0.se.fc.0.weight'" in message
    assert message.count("ValueError") == 0 and message.startswith("The state dict does not fit")
    for old, new in zip(before, model.weights, strict=True):
        np.testing.assert_array_equal(old, new)


def test_a_plain_checkpoint_does_not_fit_an_srm_network():
    plain = cifar_resnet(8, num_classes=5)
    with_srm = cifar_resnet(8, "srm", num_classes=5)
    with pytest.raises(ValueError, match="missing key 'layer1.0.rclb.cfc'"):
        load_torch_weights(with_srm, random_state(expected_state_shapes(plain)))


def test_layers_without_a_mapping_are_listed():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.DepthwiseConv2D(3, name="dw")(inputs)
    x = keras.layers.LayerNormalization(name="norm")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(x))
    with pytest.raises(ValueError) as info:
        load_torch_weights(model, {})
    assert "'dw' (DepthwiseConv2D)" in str(info.value)
    assert "'norm' (LayerNormalization)" in str(info.value)


# --- non-strict loading: what fits, and a report -----------------------------------------------


def imagenet_plain_state(model, seed=3):
    """A torchvision-style checkpoint of the plain network with a 1000-class head."""
    shapes = {
        k: v
        for k, v in expected_state_shapes(model).items()
        if ".rclb." not in k  # a plain ResNet has no SRM modules
    }
    shapes["fc.weight"] = (1000, shapes["fc.weight"][1])
    shapes["fc.bias"] = (1000,)
    return random_state(shapes, seed=seed)


def test_non_strict_loads_a_plain_checkpoint_into_an_srm_network():
    model = resnet(18, "srm", num_classes=7, input_shape=(None, None, 3))
    state = imagenet_plain_state(model)
    srm_before = {w.path: np.array(w) for w in model.weights if "rclb" in w.path}
    fc_before = np.array(model.get_layer("fc").kernel)
    report = load_torch_weights(model, state, strict=False)

    assert isinstance(report, kr.convert.LoadReport) and not report.fits
    # torchvision's resnet18: 102 entries besides num_batches_tracked, two of them the head.
    assert len(report.loaded) == 100 and report.skipped == ()
    assert sorted(report.mismatched) == [
        ("fc.bias", (1000,), (7,)),
        ("fc.weight", (1000, 512), (7, 512)),
    ]
    assert len(report.missing) == 5 * 8
    groups = report.by_module()
    assert sorted(groups["layer2.1.rclb"]["missing"]) == [
        "layer2.1.rclb.bn.bias",
        "layer2.1.rclb.bn.running_mean",
        "layer2.1.rclb.bn.running_var",
        "layer2.1.rclb.bn.weight",
        "layer2.1.rclb.cfc",
    ]
    assert groups["layer2.1.conv1"] == {
        "loaded": ["layer2.1.conv1.weight"],
        "missing": [],
        "mismatched": [],
        "skipped": [],
    }
    # The backbone is loaded; the SRM modules and the new head keep their initialisation.
    np.testing.assert_array_equal(
        model.get_layer("layer3_0_conv2").kernel,
        state["layer3.0.conv2.weight"].transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(
        model.get_layer("layer4_1_bn2").moving_variance, state["layer4.1.bn2.running_var"]
    )
    for weight in model.weights:
        if weight.path in srm_before:
            np.testing.assert_array_equal(weight, srm_before[weight.path])
    np.testing.assert_array_equal(model.get_layer("fc").kernel, fc_before)

    summary = report.summary()
    assert summary.splitlines()[0].startswith("loaded 100 tensors")
    rows = {line.split()[0]: line.split()[1:] for line in summary.splitlines()[1:]}
    assert rows["module"] == ["loaded", "missing", "mismatched", "skipped"]
    assert rows["layer1.0.rclb"] == ["0", "5", "0", "0"]
    assert rows["fc"] == ["0", "0", "2", "0"]
    assert "layer1.0.conv1" not in rows  # complete modules are counted, not listed


def test_non_strict_reports_unused_keys_and_layers_without_a_mapping():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.DepthwiseConv2D(3, name="dw")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(x))
    dw_before = np.array(model.get_layer("dw").kernel)
    state = {
        "fc.weight": np.ones((2, 3), "float32"),
        "fc.bias": np.full(2, 0.5, "float32"),
        "layer1.0.se.fc.0.weight": np.ones((4, 64), "float32"),
        "layer1.0.se.fc.2.weight": np.ones((64, 4), "float32"),
    }
    report = load_torch_weights(model, state, strict=False)
    assert report.loaded == ("fc.weight", "fc.bias")
    assert report.skipped == ("layer1.0.se.fc.0.weight", "layer1.0.se.fc.2.weight")
    assert report.unmapped_layers == ("dw",)
    assert report.by_module()["layer1.0.se.fc.0"]["skipped"] == ["layer1.0.se.fc.0.weight"]
    np.testing.assert_array_equal(model.get_layer("fc").bias, [0.5, 0.5])
    np.testing.assert_array_equal(model.get_layer("dw").kernel, dw_before)
    assert "layers without a PyTorch mapping, left as they were: dw" in report.summary()


def test_non_strict_refuses_a_state_dict_of_which_nothing_fits(srm_resnet18):
    # DataParallel checkpoints prefix every key with `module.`.
    state = {f"module.{k}": v for k, v in random_state(expected_state_shapes(srm_resnet18)).items()}
    with pytest.raises(ValueError) as info:
        load_torch_weights(srm_resnet18, state, strict=False)
    message = str(info.value)
    assert message.startswith("No tensor of the state dict fits model")
    assert "key prefix" in message and "unexpected key 'module.conv1.weight'" in message
    assert message.endswith(f"Received: state_dict=<{len(state)} keys>")


def test_strict_errors_are_summarised_with_shape_mismatches_first():
    model = resnet(50, "srm", num_classes=7, input_shape=(None, None, 3))
    state = imagenet_plain_state(model)
    state["layer9.0.conv1.weight"] = np.ones((3, 3), "float32")
    with pytest.raises(ValueError) as info:
        load_torch_weights(model, state)
    message = str(info.value)
    lines = message.splitlines()
    assert lines[0].startswith(
        f"The state dict does not fit model {model.name!r}: 2 shape mismatches, "
        "80 missing keys, 1 unexpected key; nothing was loaded."
    )
    assert "strict=False" in lines[0]
    assert lines[1].strip().startswith("shape mismatches: key 'fc.weight' has shape (1000, 2048)")
    assert lines[2].strip().startswith("missing keys by module: layer1.0.rclb 5, layer1.1.rclb 5")
    assert "and 4 more modules" in lines[2] and "(and 75 more)" in lines[2]
    assert "missing key 'layer1.0.rclb.cfc'" in lines[2]
    assert lines[3].strip() == (
        "unexpected keys by module: layer9.0.conv1 1; first: unexpected key 'layer9.0.conv1.weight'"
    )
    assert lines[-1] == f"Received: state_dict=<{len(state)} keys>"
    # 80 missing keys used to make one line of several thousand characters.
    assert len(message) < 1200 and max(len(line) for line in lines) < 500


def test_strict_must_be_a_bool(srm_resnet18):
    with pytest.raises(ValueError, match="Received: strict='no'"):
        load_torch_weights(srm_resnet18, {}, strict="no")


# --- logits parity with a torch re-implementation of torchvision's ResNet ----------------------


def torch_resnet(depth, rclb=None, num_classes=10):
    """The reference torchvision ResNet (v1.5) with random statistics and affine parameters."""
    torch = pytest.importorskip("torch")
    from references.torch_modules import ResNet

    torch.manual_seed(depth)
    model = ResNet(depth, rclb, num_classes)
    # Random statistics and affine parameters everywhere (the defaults would hide mistakes).
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5, generator=generator)
            elif name.endswith(("running_mean", "bn1.bias", "bn2.bias", "bn3.bias", ".1.bias")):
                tensor.normal_(0.0, 0.1, generator=generator)
            elif name.endswith(
                ("bn.weight", "bn1.weight", "bn2.weight", "bn3.weight", ".1.weight")
            ):
                tensor.uniform_(0.5, 1.0, generator=generator)
            elif name.endswith("cfc"):
                tensor.normal_(0.0, 0.5, generator=generator)
    return torch, model.eval()


@pytest.mark.parametrize(
    "depth,rclb,size,kwargs",
    [
        (18, None, (45, 51), {}),  # odd sizes: padding must match PyTorch's exactly
        (18, "se", (32, 32), {}),
        # Official SRM: torch.std, i.e. unbiased and no epsilon. 40 -> 20 -> 10 -> 5 -> 3 -> 2.
        pytest.param(
            50, "srm", (40, 40), {"unbiased": True, "epsilon": 0.0}, marks=pytest.mark.slow
        ),
    ],
    ids=["resnet18_odd_size", "se_resnet18", "srm_resnet50"],
)
def test_logits_match_pytorch_in_eval_mode(depth, rclb, size, kwargs):
    torch, module = torch_resnet(depth, rclb)
    if rclb and rclb not in kr.available():
        pytest.skip(f"{rclb} is not available")
    state = {k: v.numpy() for k, v in module.state_dict().items()}
    model = resnet(depth, rclb, num_classes=10, input_shape=(*size, 3), **kwargs)
    load_torch_weights(model, state)
    x = np.random.default_rng(0).normal(size=(2, *size, 3)).astype("float32")
    with torch.no_grad():
        expected = module(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    actual = np.asarray(model(x, training=False))
    assert np.abs(expected).max() > 1e-2  # a meaningful comparison, not two zeros
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4)


def test_two_non_strict_loads_backbone_then_srm_match_pytorch():
    """The backbone of a PyTorch SRM-ResNet, then its SRM modules, each loaded non-strict:
    together they must land every tensor where one strict load would."""
    torch, module = torch_resnet(18, "srm")
    state = {k: v.numpy() for k, v in module.state_dict().items()}
    backbone = {k: v for k, v in state.items() if ".rclb." not in k}
    srm = {k: v for k, v in state.items() if ".rclb." in k}
    size = (40, 40)  # 40 -> 20 -> 10 -> 5 -> 3 -> 2: layer4's SRM sees more than one position
    model = resnet(18, "srm", num_classes=10, input_shape=(*size, 3), unbiased=True, epsilon=0.0)
    first = load_torch_weights(model, backbone, strict=False)
    second = load_torch_weights(model, srm, strict=False)
    assert len(first.missing) == len(second.loaded) == 5 * 8
    assert sorted(first.loaded + second.loaded) == sorted(
        k for k in state if not k.endswith("num_batches_tracked")
    )
    x = np.random.default_rng(0).normal(size=(2, *size, 3)).astype("float32")
    with torch.no_grad():
        expected = module(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    np.testing.assert_allclose(model(x, training=False), expected, rtol=0, atol=1e-4)

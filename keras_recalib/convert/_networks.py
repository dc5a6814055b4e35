"""Whole networks: PyTorch state dicts of torchvision-style ResNets into `resnet(...)` models.

A Keras layer named after a PyTorch module path with `_` for `.` (`layer1_0_conv1` for
`layer1.0.conv1`) takes the keys under that path: `weight` (and `bias`) for convolutions and
dense layers, `weight`, `bias`, `running_mean`, `running_var` for batch normalisation, and the
module's own keys for a recalibration layer (through its registered loader, e.g. SRM's
`layer1.0.rclb.cfc` and `layer1.0.rclb.bn.*`, as the official SRM code names them).
"""

import keras

from keras_recalib.convert._state import (
    StateDict,
    conv_kernel,
    find_loader,
    linear_kernel,
    load_batch_norm,
    torch_conv_shape,
)


def torch_prefix(layer_name):
    """A Keras layer's PyTorch module path: `layer1_0_downsample_0` -> `layer1.0.downsample.0`."""
    return layer_name.replace("_", ".")


def _load_conv(layer, state):
    kernel_shape = tuple(layer.kernel.shape)
    state.assign(layer.kernel, conv_kernel(state.get("weight", torch_conv_shape(kernel_shape))))
    if layer.use_bias:
        state.assign(layer.bias, state.get("bias", (kernel_shape[-1],)))


def _load_dense(layer, state):
    units_in, units_out = tuple(layer.kernel.shape)
    state.assign(layer.kernel, linear_kernel(state.get("weight", (units_out, units_in))))
    if layer.use_bias:
        state.assign(layer.bias, state.get("bias", (units_out,)))


def _load_batch_norm(layer, state):
    if not (layer.center and layer.scale):
        raise ValueError(
            "PyTorch's affine BatchNorm needs center=True and scale=True. "
            f"Received: layer={layer.name!r}"
        )
    load_batch_norm(layer, state)


def _layer_loader(layer):
    loader = find_loader(layer)
    if loader is not None:
        return loader
    # DepthwiseConv2D, SeparableConv2D and transposed convolutions lay kernels out otherwise.
    if type(layer) is keras.layers.Conv2D:
        return _load_conv
    if type(layer) is keras.layers.Dense:
        return _load_dense
    if isinstance(layer, keras.layers.BatchNormalization):
        return _load_batch_norm
    return None


def load_network_weights(model, state_dict, strict=True):
    """Copies a PyTorch state dict into a built functional model, layer by layer.

    Strict: every layer with weights must have a mapping (convolution, dense, batch
    normalisation or a layer with a registered loader); missing, unexpected and mis-shaped keys
    are reported together, and nothing is written unless the whole state dict fits; returns the
    model. Not strict: loads whatever fits and returns the `LoadReport`.
    """
    if not model.built:
        raise ValueError(
            "Build the model before loading weights (call it on an input). "
            f"Received: model={model.name!r} (not built)"
        )
    state = StateDict(state_dict)
    unsupported = []
    for layer in model.layers:
        if not layer.weights:
            continue
        loader = _layer_loader(layer)
        if loader is None:
            unsupported.append(layer)
            continue
        module = torch_prefix(layer.name)
        loader(layer, state.child(module + ".", module=module))
    if unsupported and strict:
        raise ValueError(
            f"No PyTorch weight mapping for these layers of {model.name!r}: "
            + ", ".join(f"{u.name!r} ({type(u).__name__})" for u in unsupported)
            + f". Received: model={model.name!r}"
        )
    unmapped = [u.name for u in unsupported]
    report = state.finish(f"model {model.name!r}", strict=strict, unmapped_layers=unmapped)
    return model if strict else report

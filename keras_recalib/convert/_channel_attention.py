"""SE, ECA and CBAM: the official PyTorch parameter names (and timm's for SE)."""

import numpy as np

from keras_recalib.convert._state import (
    conv_kernel,
    linear_kernel,
    load_batch_norm,
    register_loader,
    torch_conv_shape,
)
from keras_recalib.layers.cbam import ConvBlockAttention
from keras_recalib.layers.eca import EfficientChannelAttention
from keras_recalib.layers.squeeze_excite import SqueezeExcitation


def _load_linear(state, key, kernel, bias, conv_layout=False):
    """A PyTorch Linear `key.weight` (out, in), or a 1x1 Conv2d (out, in, 1, 1), and its bias."""
    cin, cout = kernel.shape
    shape = (cout, cin, 1, 1) if conv_layout else (cout, cin)
    value = state.get(key + ".weight", shape)
    state.assign(kernel, None if value is None else linear_kernel(value.reshape(cout, cin)))
    state.assign(bias, state.get(key + ".bias", (cout,)))


def _load_excitation(layer, state, first, second, conv_layout=False):
    _load_linear(state, first, layer.fc1_kernel, layer.fc1_bias, conv_layout)
    _load_linear(state, second, layer.fc2_kernel, layer.fc2_bias, conv_layout)


@register_loader(SqueezeExcitation)
def load_squeeze_excitation(layer, state):
    # SRM repository's SELayer: `fc` = Sequential(Linear, ReLU, Linear).
    # timm's SEModule: 1x1 convolutions `fc1`, `fc2` (its `bn` is an Identity by default).
    if "fc1.weight" in state:
        _load_excitation(layer, state, "fc1", "fc2", conv_layout=True)
    else:
        _load_excitation(layer, state, "fc.0", "fc.2")


@register_loader(EfficientChannelAttention)
def load_efficient_channel_attention(layer, state):
    # Official eca_layer (and timm's EcaModule): Conv1d(1, 1, k, bias=False) named `conv`.
    k = layer.kernel.shape[0]
    value = state.get("conv.weight", (1, 1, k))
    state.assign(layer.kernel, None if value is None else np.reshape(value, (k,)))


@register_loader(ConvBlockAttention)
def load_conv_block_attention(layer, state):
    # Official CBAM: ChannelGate.mlp = Sequential(Flatten, Linear, ReLU, Linear);
    # SpatialGate.spatial = BasicConv(conv, bn) over [channel max; channel mean].
    _load_excitation(layer, state, "ChannelGate.mlp.1", "ChannelGate.mlp.3")
    if layer.use_spatial:
        spatial = state.child("SpatialGate.spatial.")
        shape = torch_conv_shape(layer.spatial_kernel.shape)
        state.assign(layer.spatial_kernel, conv_kernel(spatial.get("conv.weight", shape)))
        load_batch_norm(layer.spatial_bn, spatial.child("bn."))

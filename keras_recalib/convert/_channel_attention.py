"""SE, ECA and CBAM: the official PyTorch parameter names (and timm's for SE)."""

import numpy as np

from keras_recalib.convert._state import (
    conv_kernel,
    load_batch_norm,
    load_excitation,
    register_loader,
    torch_conv_shape,
)
from keras_recalib.layers.cbam import ConvBlockAttention
from keras_recalib.layers.eca import EfficientChannelAttention
from keras_recalib.layers.squeeze_excite import SqueezeExcitation


@register_loader(SqueezeExcitation)
def load_squeeze_excitation(layer, state):
    # SRM repository's SELayer: `fc` = Sequential(Linear, ReLU, Linear).
    # timm's SEModule: 1x1 convolutions `fc1`, `fc2` (its `bn` is an Identity by default).
    if "fc1.weight" in state:
        load_excitation(layer, state, "fc1", "fc2", conv_layout=True)
    else:
        load_excitation(layer, state, "fc.0", "fc.2")


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
    load_excitation(layer, state, "ChannelGate.mlp.1", "ChannelGate.mlp.3")
    if layer.use_spatial:
        spatial = state.child("SpatialGate.spatial.")
        shape = torch_conv_shape(layer.spatial_kernel.shape)
        state.assign(layer.spatial_kernel, conv_kernel(spatial.get("conv.weight", shape)))
        load_batch_norm(layer.spatial_bn, spatial.child("bn."))

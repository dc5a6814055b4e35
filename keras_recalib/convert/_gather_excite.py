"""Gather-Excite: the SRM repository's `GELayer` names (global GE-θ) and timm's (local extents,
MLP)."""

import numpy as np

from keras_recalib.convert._state import (
    load_batch_norm,
    load_excitation,
    register_loader,
)
from keras_recalib.layers.gather_excite import GatherExcite


def _load_depthwise(conv, state, key):
    # PyTorch depthwise Conv2d weight (C, 1, kh, kw) -> Keras (kh, kw, C, 1).
    kh, kw, channels, _ = conv.kernel.shape
    value = state.get(key, (channels, 1, kh, kw))
    state.assign(conv.kernel, None if value is None else np.transpose(value, (2, 3, 0, 1)))


@register_loader(GatherExcite)
def load_gather_excite(layer, state):
    if layer.parametric and layer.extent == "global":
        # SRM repository's GELayer: `conv` = Sequential(depthwise Conv2d with bias, BatchNorm2d).
        conv, bn = layer.gather_convs[0], layer.gather_bns[0]
        _load_depthwise(conv, state, "conv.0.weight")
        load_batch_norm(bn, state.child("conv.1."))
        if "conv.0.bias" in state:
            # The batch normalisation cancels a bias in training mode; at inference it is the
            # same as subtracting it from the running mean (later assignments win).
            channels = bn.moving_mean.shape[0]
            bias = state.get("conv.0.bias", (channels,))
            mean = state.get("conv.1.running_mean", (channels,))
            if bias is not None and mean is not None:
                state.assign(bn.moving_mean, mean - bias)
    elif layer.parametric:
        # timm's GatherExcite(extra_params=True, extent=e): `gather.conv{i}`, `gather.norm{i}`.
        for i, (conv, bn) in enumerate(zip(layer.gather_convs, layer.gather_bns, strict=True)):
            _load_depthwise(conv, state, f"gather.conv{i + 1}.weight")
            load_batch_norm(bn, state.child(f"gather.norm{i + 1}."))
    if layer.use_mlp:
        # timm's ConvMlp names (the official prototxt's excite/1x1_down and excite/1x1_up).
        load_excitation(layer, state, "mlp.fc1", "mlp.fc2", conv_layout=True)

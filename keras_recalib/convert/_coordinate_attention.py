"""Coordinate Attention: the official `CoordAtt` of `coordatt.py` and of `mbv2_ca.py`."""

from keras_recalib.convert._state import (
    conv_kernel,
    load_batch_norm,
    register_loader,
    torch_conv_shape,
)
from keras_recalib.layers.coordinate_attention import CoordinateAttention


def _load_conv(conv, state):
    state.assign(conv.kernel, conv_kernel(state.get("weight", torch_conv_shape(conv.kernel.shape))))
    state.assign(conv.bias, state.get("bias", tuple(conv.bias.shape)))


@register_loader(CoordinateAttention)
def load_coordinate_attention(layer, state):
    _load_conv(layer.conv1, state.child("conv1."))
    load_batch_norm(layer.bn1, state.child("bn1."))
    # coordatt.py: conv_h / conv_w; mbv2_ca.py (the official MobileNetV2): conv2 / conv3.
    if "conv2.weight" in state:
        names = ("conv2.", "conv3.")
    else:
        names = ("conv_h.", "conv_w.")
    _load_conv(layer.conv_h, state.child(names[0]))
    _load_conv(layer.conv_w, state.child(names[1]))

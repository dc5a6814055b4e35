"""SCConv: the seed's `SCConv` module (k1 .. k4, each a Conv2d + BatchNorm2d)."""

from keras_recalib.convert._state import (
    conv_kernel,
    load_batch_norm,
    register_loader,
    torch_conv_shape,
)
from keras_recalib.layers.scconv import SelfCalibratedConv2D


@register_loader(SelfCalibratedConv2D)
def load_scconv(layer, state):
    # k2 is Sequential(AvgPool2d, Conv2d, BatchNorm2d): its indices are shifted by one. The
    # official SCConv names k2, k3 and k4 the same way (its k1 lives in SCBottleneck).
    for name, conv_index in (("k1", 0), ("k2", 1), ("k3", 0), ("k4", 0)):
        conv = getattr(layer, f"{name}_conv")
        shape = torch_conv_shape(tuple(conv.kernel.shape))
        value = state.get(f"{name}.{conv_index}.weight", shape)
        state.assign(conv.kernel, conv_kernel(value))
        load_batch_norm(getattr(layer, f"{name}_bn"), state.child(f"{name}.{conv_index + 1}."))

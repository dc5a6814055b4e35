"""Triplet Attention: the official `TripletAttention` (root file and `MODELS/` file names)."""

from keras_recalib.convert._state import (
    conv_kernel,
    load_batch_norm,
    register_loader,
    torch_conv_shape,
)
from keras_recalib.layers.triplet_attention import TripletAttention

# Root triplet_attention.py: `<branch>.conv.conv` / `<branch>.conv.bn`;
# MODELS/triplet_attention.py: `<gate>.spatial.conv` / `<gate>.spatial.bn`.
_MODELS_NAMES = {"cw": "ChannelGateH", "hc": "ChannelGateW", "hw": "SpatialGate"}


@register_loader(TripletAttention)
def load_triplet_attention(layer, state):
    models_layout = "ChannelGateH.spatial.conv.weight" in state
    for name in layer.branch_names:
        prefix = f"{_MODELS_NAMES[name]}.spatial." if models_layout else f"{name}.conv."
        branch = state.child(prefix)
        kernel = getattr(layer, f"{name}_kernel")
        # The NHWC planes keep the official kernel's axis order: (C, W), (H, C), (H, W).
        value = branch.get("conv.weight", torch_conv_shape(kernel.shape))
        branch.assign(kernel, conv_kernel(value))
        load_batch_norm(getattr(layer, f"{name}_bn"), branch.child("bn."))

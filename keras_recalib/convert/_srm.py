"""SRM: the official repository's `SRMLayer` and the seeds' Conv1d variant."""

from keras_recalib.convert._state import load_batch_norm, register_loader
from keras_recalib.layers.srm import StyleRecalibration


@register_loader(StyleRecalibration)
def load_srm(layer, state):
    channels = layer.cfc.shape[0]
    # Official: `cfc` of shape (C, 2). Seeds: Conv1d(C, C, 2, groups=C), `cfc.weight` (C, 1, 2).
    if "cfc.weight" in state:
        value = state.get("cfc.weight", (channels, 1, 2))
        state.assign(layer.cfc, None if value is None else value[:, 0, :])
    else:
        state.assign(layer.cfc, state.get("cfc", (channels, 2)))
    if layer.bn is not None:
        load_batch_norm(layer.bn, state.child("bn."))

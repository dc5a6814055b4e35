"""SGE (PytorchInsight names) and SimAM (no parameters)."""

from keras_recalib.convert._state import register_loader
from keras_recalib.layers.sge import SpatialGroupEnhance
from keras_recalib.layers.simam import SimAM


@register_loader(SpatialGroupEnhance)
def load_spatial_group_enhance(layer, state):
    # Official SpatialGroupEnhance: `weight` and `bias` of shape (1, groups, 1, 1).
    shape = (1, layer.groups, 1, 1)
    for name in ("weight", "bias"):
        value = state.get(name, shape)
        state.assign(getattr(layer, name), None if value is None else value.reshape(-1))


@register_loader(SimAM)
def load_simam(layer, state):
    # simam_module has no parameters: only an empty state dict fits (extra keys are reported).
    del layer, state

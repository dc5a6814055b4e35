"""Loading PyTorch weights into keras_recalib layers (no torch import: arrays in, arrays out).

`load_torch_weights(layer, state_dict)` takes a mapping from PyTorch parameter names to numpy
arrays, e.g. `{k: v.numpy() for k, v in module.state_dict().items()}`, named as the module's
official code names them.
"""

import keras

from keras_recalib.convert import (  # noqa: F401  (SGE, SimAM, GE loaders)
    _channel_attention,  # noqa: F401
    _coordinate_attention,  # noqa: F401
    _gather_excite,
    _scconv,  # noqa: F401  (registers its loader)
    _sge,
    _srm,  # noqa: F401  (registers its loader)
    _triplet_attention,  # noqa: F401
)
from keras_recalib.convert._state import StateDict, find_loader

__all__ = ["load_torch_weights"]


def load_torch_weights(layer, state_dict):
    """Copies a PyTorch state dict into a built keras_recalib layer.

    Args:
        layer: a built layer of this package, or a built functional model whose layers are
            named after PyTorch module paths with `_` for `.` (`keras_recalib.models.resnet`).
        state_dict: mapping of PyTorch parameter names to arrays (numpy, or anything
            `numpy.asarray` accepts).

    Returns:
        The layer.

    Raises:
        ValueError: the layer is not built or not supported, or keys are missing, unexpected or
            mis-shaped (all of them are listed in one message).
    """
    if not isinstance(layer, keras.layers.Layer):
        raise ValueError(f"Expected a Keras layer. Received: layer={layer!r}")
    if isinstance(layer, keras.Model):
        # Whole networks (e.g. `keras_recalib.models.resnet`), torchvision key names.
        from keras_recalib.convert._networks import load_network_weights

        return load_network_weights(layer, state_dict)
    loader = find_loader(layer)
    if loader is None:
        raise ValueError(
            f"No PyTorch weight mapping for {type(layer).__name__}. Received: layer={layer.name!r}"
        )
    if not layer.built:
        raise ValueError(
            f"Build the layer before loading weights (call it on an input or "
            f"`layer.build(input_shape)`). Received: layer={layer.name!r} (not built)"
        )
    state = StateDict(state_dict)
    loader(layer, state)
    state.finish(f"{type(layer).__name__} {layer.name!r}")
    return layer

"""Loading PyTorch weights into keras_recalib layers (no torch import: arrays in, arrays out).

`load_torch_weights(layer, state_dict)` takes a mapping from PyTorch parameter names to numpy
arrays, e.g. `{k: v.numpy() for k, v in module.state_dict().items()}`, named as the module's
official code names them. With `strict=False` it loads what fits (e.g. an ImageNet torchvision
ResNet into an SRM-ResNet, whose SRM modules keep their initialisation) and returns a
`LoadReport`.
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
from keras_recalib.convert._report import LoadReport
from keras_recalib.convert._state import StateDict, find_loader

__all__ = ["LoadReport", "load_torch_weights"]


def load_torch_weights(layer, state_dict, strict=True):
    """Copies a PyTorch state dict into a built keras_recalib layer or model.

    Args:
        layer: a built layer of this package, or a built functional model whose layers are
            named after PyTorch module paths with `_` for `.` (`keras_recalib.models.resnet`).
        state_dict: mapping of PyTorch parameter names to arrays (numpy, or anything
            `numpy.asarray` accepts).
        strict: bool. True: every key must fit, or nothing is written. False: every tensor
            whose key and shape fit is loaded, everything else keeps its current values (for
            example the SRM modules of an SRM-ResNet loaded from a plain torchvision ResNet
            checkpoint), and layers without a PyTorch mapping are left as they were. Defaults
            to True.

    Returns:
        With `strict=True`, the layer. With `strict=False`, a `LoadReport`: the keys loaded,
        skipped (unused), missing and mis-shaped, `by_module()`, and a printable `summary()`.

    Raises:
        ValueError: the layer is not built or not supported; with `strict=True`, keys are
            missing, unexpected or mis-shaped (summarised in one message: shape mismatches
            first, counts per module, the first few names); with `strict=False`, no tensor at
            all fits.
    """
    if not isinstance(strict, bool):
        raise ValueError(f"`strict` must be True or False. Received: strict={strict!r}")
    if not isinstance(layer, keras.layers.Layer):
        raise ValueError(f"Expected a Keras layer. Received: layer={layer!r}")
    if isinstance(layer, keras.Model):
        # Whole networks (e.g. `keras_recalib.models.resnet`), torchvision key names.
        from keras_recalib.convert._networks import load_network_weights

        return load_network_weights(layer, state_dict, strict=strict)
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
    state = StateDict(state_dict, module=layer.name)
    loader(layer, state)
    report = state.finish(f"{type(layer).__name__} {layer.name!r}", strict=strict)
    return layer if strict else report

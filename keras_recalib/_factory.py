"""Short names for the layers: `keras_recalib.get("srm")`."""

import keras

from keras_recalib import layers

_NAMES = {
    "srm": layers.StyleRecalibration,
    "se": layers.SqueezeExcitation,
    "eca": layers.EfficientChannelAttention,
    "cbam": layers.ConvBlockAttention,
    "ca": layers.CoordinateAttention,
    "triplet": layers.TripletAttention,
    "scconv": layers.SelfCalibratedConv2D,
    "sge": layers.SpatialGroupEnhance,
    "simam": layers.SimAM,
    "ge": layers.GatherExcite,
}


def available():
    """The short names `get` accepts, sorted."""
    return sorted(_NAMES)


def get(identifier, **kwargs):
    """A recalibration layer from a short name, a layer class or a layer instance.

    Names are case-insensitive (`"srm"`, `"SRM"`). A class is instantiated with `kwargs`; an
    instance is returned unchanged (passing `kwargs` with it is an error).
    """
    if isinstance(identifier, keras.layers.Layer):
        if kwargs:
            raise ValueError(
                "Keyword arguments cannot be applied to a layer instance. "
                f"Received: identifier={identifier!r}, kwargs={kwargs!r}"
            )
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, keras.layers.Layer):
        return identifier(**kwargs)
    if isinstance(identifier, str) and identifier.lower() in _NAMES:
        return _NAMES[identifier.lower()](**kwargs)
    raise ValueError(
        "Unknown recalibration module; valid names are "
        f"{', '.join(available())}. Received: identifier={identifier!r}"
    )

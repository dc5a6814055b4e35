"""The one registry of short module names: `keras_recalib.get`, the models and the CLI read it.

`NAMES` maps each lowercase short name to the `"module:Class"` path of its layer. The table
and `available()` need no Keras: this module imports Keras only inside the functions that
construct layers, and resolves a path (importing the layers) only when a layer is asked for.
"""

import importlib

NAMES = {
    "srm": "keras_recalib.layers:StyleRecalibration",
    "se": "keras_recalib.layers:SqueezeExcitation",
    "eca": "keras_recalib.layers:EfficientChannelAttention",
    "cbam": "keras_recalib.layers:ConvBlockAttention",
    "ca": "keras_recalib.layers:CoordinateAttention",
    "triplet": "keras_recalib.layers:TripletAttention",
    "scconv": "keras_recalib.layers:SelfCalibratedConv2D",
    "sge": "keras_recalib.layers:SpatialGroupEnhance",
    "simam": "keras_recalib.layers:SimAM",
    "ge": "keras_recalib.layers:GatherExcite",
}


def available():
    """The short names `get` accepts, sorted."""
    return sorted(NAMES)


def resolve(name):
    """The layer class registered under `name` (case-insensitive), or None."""
    path = NAMES.get(name.lower())
    if path is None:
        return None
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _unknown(identifier):
    return ValueError(
        "Unknown recalibration module; valid names are "
        f"{', '.join(available())}. Received: identifier={identifier!r}"
    )


def get(identifier, **kwargs):
    """A recalibration layer from a short name, a layer class or a layer instance.

    Names are case-insensitive (`"srm"`, `"SRM"`). A class is instantiated with `kwargs`; an
    instance is returned unchanged (passing `kwargs` with it is an error).
    """
    import keras

    if isinstance(identifier, keras.layers.Layer):
        if kwargs:
            raise ValueError(
                "Keyword arguments cannot be applied to a layer instance. "
                f"Received: identifier={identifier!r}, kwargs={kwargs!r}"
            )
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, keras.layers.Layer):
        return identifier(**kwargs)
    cls = resolve(identifier) if isinstance(identifier, str) else None
    if cls is None:
        raise _unknown(identifier)
    return cls(**kwargs)


def module_factory(recalibration, kwargs):
    """A function `name -> new, unbuilt layer` for `recalibration`, or None.

    `recalibration` is None, a name or class `get` accepts, or a callable that takes
    `**kwargs` and returns a new layer. A layer instance is refused: one instance cannot sit in
    several places of a network. Bad names and arguments fail here, before any layer is made
    for a network.
    """
    import keras

    from keras_recalib import _graph_internals

    if recalibration is None:
        if kwargs:
            raise ValueError(
                "Module arguments were given without a module. "
                f"Received: recalibration=None, kwargs={kwargs!r}"
            )
        return None
    if isinstance(recalibration, keras.layers.Layer):
        raise ValueError(
            "Argument `recalibration` must be a name, a layer class or a callable that returns "
            "a new layer: one layer instance cannot be shared by every residual branch. "
            f"Received: recalibration={recalibration!r}"
        )
    if isinstance(recalibration, str):
        get(recalibration, **kwargs)  # fails now on a bad name or argument

        def make(name):
            return get(recalibration, name=name, **kwargs)

        return make
    if not callable(recalibration):
        raise ValueError(
            "Argument `recalibration` must be None, a module name "
            f"({', '.join(available())}), a layer class or a callable that returns a "
            f"layer. Received: recalibration={recalibration!r}"
        )

    def make_from_callable(name):
        layer = recalibration(**kwargs)
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(
                "Argument `recalibration` must return a Keras layer. "
                f"Received: recalibration={recalibration!r} returning {layer!r}"
            )
        if layer.built:
            raise ValueError(
                "Argument `recalibration` must return a new, unbuilt layer for each block. "
                f"Received: recalibration={recalibration!r} returning built layer {layer.name!r}"
            )
        # The name is what the PyTorch weight mapping reads.
        _graph_internals.rename_unbuilt(layer, name)
        return layer

    return make_from_callable

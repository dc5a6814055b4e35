"""The recalibration layers. All are NHWC Keras layers registered for deserialisation."""

from keras_recalib.layers.srm import StyleRecalibration

__all__ = [
    "StyleRecalibration",
]

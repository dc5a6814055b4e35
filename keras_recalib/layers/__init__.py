"""The recalibration layers. All are NHWC Keras layers registered for deserialisation."""

from keras_recalib.layers.cbam import ConvBlockAttention
from keras_recalib.layers.coordinate_attention import CoordinateAttention
from keras_recalib.layers.eca import EfficientChannelAttention
from keras_recalib.layers.gather_excite import GatherExcite
from keras_recalib.layers.scconv import SelfCalibratedConv2D
from keras_recalib.layers.sge import SpatialGroupEnhance
from keras_recalib.layers.simam import SimAM
from keras_recalib.layers.squeeze_excite import SqueezeExcitation
from keras_recalib.layers.srm import StyleRecalibration
from keras_recalib.layers.triplet_attention import TripletAttention

__all__ = [
    "StyleRecalibration",
    "SqueezeExcitation",
    "EfficientChannelAttention",
    "ConvBlockAttention",
    "CoordinateAttention",
    "TripletAttention",
    "SelfCalibratedConv2D",
    "SpatialGroupEnhance",
    "SimAM",
    "GatherExcite",
]

"""keras_recalib: CNN recalibration modules as Keras 3 layers (NHWC), on every Keras backend.

Importing the package registers every layer with Keras' serialisation, so `.keras` files that
contain them load without `custom_objects`. The layers run on TensorFlow, JAX and PyTorch with
the same semantics; exports (SavedModel, TFLite) need the TensorFlow backend.
"""

from keras_recalib import convert, data, export, inspect, layers, models
from keras_recalib._registry import available, get
from keras_recalib.layers import *  # noqa: F403

__version__ = "0.1.0"

__all__ = [
    "available",
    "convert",
    "data",
    "export",
    "get",
    "inspect",
    "layers",
    "models",
    "__version__",
    *layers.__all__,
]

"""keras_recalib: CNN recalibration modules as Keras 3 layers (NHWC), on every Keras backend.

Importing the package registers every layer with Keras' serialisation, so `.keras` files that
contain them load without `custom_objects` (also through `keras_recalib.load_model`). The layers
run on TensorFlow, JAX and PyTorch with the same semantics; exports (SavedModel, TFLite, ONNX)
need the TensorFlow backend. The `keras-recalib` console script starts from
`keras_recalib_launcher`, which answers `--help` before this module (and with it Keras) is
imported.
"""

from keras_recalib import convert, data, export, inspect, layers, models
from keras_recalib._loading import load_model
from keras_recalib._registry import available, get
from keras_recalib.layers import *  # noqa: F403

__version__ = "0.1.0"  # the only place the version is written; setup.cfg reads it

__all__ = [
    "available",
    "convert",
    "data",
    "export",
    "get",
    "inspect",
    "layers",
    "load_model",
    "models",
    "__version__",
    *layers.__all__,
]

"""keras_recalib: CNN recalibration modules as Keras 3 layers (TensorFlow backend, NHWC).

Importing the package registers every layer with Keras' serialisation, so `.keras` files that
contain them load without `custom_objects` (also through `keras_recalib.load_model`). The
`keras-recalib` console script starts from `keras_recalib_launcher`, which answers `--help`
before this module (and with it TensorFlow) is imported.
"""

import os as _os
import sys as _sys


def _refuse_backend(name):
    raise ImportError(
        "keras_recalib needs the TensorFlow backend of Keras 3, but the active backend is "
        f"{name!r}. Set the environment variable KERAS_BACKEND=tensorflow before Python imports "
        'keras (or set "backend": "tensorflow" in ~/.keras/keras.json).'
    )


# Checked before importing keras: another backend's import may fail on its own dependencies
# and hide this message.
if "keras" not in _sys.modules and _os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
    _refuse_backend(_os.environ["KERAS_BACKEND"])

import keras as _keras

if _keras.backend.backend() != "tensorflow":
    _refuse_backend(_keras.backend.backend())

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

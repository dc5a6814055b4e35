"""Networks with recalibration modules, module insertion, and complexity counts.

- `resnet(depth, recalibration=None, ...)` (and `resnet18` ... `resnet152`): torchvision's
  ResNets with a module on every residual branch; `cifar_resnet(depth, ...)`: the CIFAR ResNets.
- `insert_recalibration(model, recalibration, **kwargs)`: adds modules to the residual branches
  of an existing functional model (e.g. `keras.applications.ResNet50`).
- `resnet_complexity(...)`, `count_macs(model)`, `trainable_parameters(model)`: parameter and
  multiply-accumulate counts as the papers' tables give them.

The layout of each ResNet is written once, in `plan.py`; the builders (`resnet.py`) and the
counter (`complexity.py`) both read it.
"""

from keras_recalib.models.complexity import count_macs, resnet_complexity, trainable_parameters
from keras_recalib.models.insert import insert_recalibration
from keras_recalib.models.resnet import (
    cifar_resnet,
    resnet,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
)

__all__ = [
    "resnet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "cifar_resnet",
    "insert_recalibration",
    "resnet_complexity",
    "count_macs",
    "trainable_parameters",
]

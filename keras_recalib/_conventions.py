"""PyTorch conventions that both the layers and the models follow: the official trainings'
fan-out initialisation and PyTorch's symmetric convolution padding."""

import keras


def fan_out_normal():
    """normal(0, sqrt(2 / fan_out)), PyTorch's `kaiming_normal_(mode="fan_out",
    nonlinearity="relu")`: the convolution init of torchvision's ResNet and of the official
    SCNet, Coordinate Attention (`mbv2_ca.py`) and Triplet Attention (`MODELS/resnet.py`)
    trainings."""
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal"
    )


def torch_padding(kernel_size, strides):
    """How to reproduce PyTorch's symmetric `padding=kernel_size // 2` (odd kernel):
    `(explicit zero padding per side, Keras padding)`.

    Keras' "same" pads a strided convolution asymmetrically (nothing before, the rest after),
    so those get explicit padding and "valid"; at stride 1 "same" is already symmetric.
    """
    if strides > 1 and kernel_size > 1:
        return kernel_size // 2, "valid"
    return 0, "same"

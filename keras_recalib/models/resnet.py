"""ResNets with a recalibration module on every residual branch.

The ImageNet networks follow torchvision's ResNet (He et al., "Deep Residual Learning for Image
Recognition", CVPR 2016, https://arxiv.org/abs/1512.03385; v1.5: the stride of a Bottleneck sits
on its 3x3 convolution), which is also the backbone of the official SRM code
(hyunjaelee410/style-based-recalibration-module, `models/resnet.py`): the module (`rclb` there)
sits after the last batch normalisation of each residual branch, before the addition.

Layer names are torchvision's module paths with `.` replaced by `_` (`layer1.0.conv1` is the
layer `layer1_0_conv1`), so PyTorch checkpoints map onto them one to one (see
`keras_recalib.convert.load_torch_weights`).
"""

import dataclasses

import keras

from keras_recalib import _factory
from keras_recalib import _validation as v
from keras_recalib._conventions import fan_out_normal, torch_padding

# depth -> (block kind, blocks per stage)
RESNET_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
CIFAR_DEPTHS = (20, 32, 44, 56, 110)

_EXPANSION = {"basic": 1, "bottleneck": 4}

# PyTorch's BatchNorm2d defaults (momentum 0.1 is Keras' 0.9).
_BN_EPSILON = 1e-5
_BN_MOMENTUM = 0.9


@dataclasses.dataclass(frozen=True)
class Block:
    """One residual block of a plan: what both the builder and the complexity count read."""

    name: str  # e.g. "layer1_0"
    kind: str  # "basic" or "bottleneck"
    in_channels: int
    width: int  # torchvision's `planes`
    stride: int

    @property
    def out_channels(self):
        return self.width * _EXPANSION[self.kind]

    @property
    def projection(self):
        return self.stride != 1 or self.in_channels != self.out_channels


@dataclasses.dataclass(frozen=True)
class Plan:
    """A ResNet's layout: the stem, then the residual blocks in order."""

    stem: str  # "imagenet" (7x7/2 conv + 3x3/2 max pool) or "cifar" (3x3 conv)
    stem_channels: int
    blocks: tuple

    @property
    def features(self):
        return self.blocks[-1].out_channels


def _blocks(kind, counts, widths, stem_channels):
    blocks, channels = [], stem_channels
    for stage, (count, width) in enumerate(zip(counts, widths, strict=True)):
        for index in range(count):
            stride = 2 if stage > 0 and index == 0 else 1
            block = Block(f"layer{stage + 1}_{index}", kind, channels, width, stride)
            blocks.append(block)
            channels = block.out_channels
    return tuple(blocks)


def resnet_plan(depth):
    """The layout of the torchvision ResNet of `depth` (18, 34, 50, 101 or 152)."""
    if isinstance(depth, bool) or depth not in RESNET_DEPTHS:
        raise ValueError(
            "Argument `depth` must be one of "
            f"{', '.join(str(d) for d in RESNET_DEPTHS)}. Received: depth={depth!r}"
        )
    kind, counts = RESNET_DEPTHS[depth]
    return Plan("imagenet", 64, _blocks(kind, counts, (64, 128, 256, 512), 64))


def cifar_plan(depth):
    """The layout of a CIFAR ResNet: depth = 6n + 2, three stages of n BasicBlocks."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6 != 0:
        raise ValueError(
            "Argument `depth` must be 6n + 2 for an integer n >= 1 (e.g. "
            f"{', '.join(str(d) for d in CIFAR_DEPTHS)}). Received: depth={depth!r}"
        )
    n = (depth - 2) // 6
    return Plan("cifar", 16, _blocks("basic", (n, n, n), (16, 32, 64), 16))


def module_factory(recalibration, kwargs):
    """A function `name -> new, unbuilt layer` for `recalibration`, or None.

    `recalibration` is None, a name or class `keras_recalib.get` accepts, or a callable that
    takes `**kwargs` and returns a new layer. A layer instance is refused: one instance cannot
    sit in several blocks.
    """
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
        _factory.get(recalibration, **kwargs)  # fails now on a bad name or argument

        def make(name):
            return _factory.get(recalibration, name=name, **kwargs)

        return make
    if not callable(recalibration):
        raise ValueError(
            "Argument `recalibration` must be None, a module name "
            f"({', '.join(_factory.available())}), a layer class or a callable that returns a "
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
        # The name is what the PyTorch weight mapping reads; set before the layer is built.
        layer.name = name
        return layer

    return make_from_callable


def _conv(x, filters, kernel, stride, name):
    """A bias-free convolution padded like PyTorch's `padding=kernel // 2`.

    Keras' "same" pads stride-2 convolutions asymmetrically (0 before, 1 after on even sizes);
    PyTorch pads both sides, so those get explicit zero padding and "valid".
    """
    pad, padding = torch_padding(kernel, stride)
    if pad:
        x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
    return keras.layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding=padding,
        use_bias=False,
        # torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu").
        kernel_initializer=fan_out_normal(),
        name=name,
    )(x)


def _bn(x, name):
    return keras.layers.BatchNormalization(
        axis=-1, momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON, name=name
    )(x)


def _block(x, block, make_module):
    p = block.name
    if block.kind == "basic":
        y = _conv(x, block.width, 3, block.stride, f"{p}_conv1")
        y = keras.layers.ReLU(name=f"{p}_relu1")(_bn(y, f"{p}_bn1"))
        y = _bn(_conv(y, block.width, 3, 1, f"{p}_conv2"), f"{p}_bn2")
    else:
        y = _conv(x, block.width, 1, 1, f"{p}_conv1")
        y = keras.layers.ReLU(name=f"{p}_relu1")(_bn(y, f"{p}_bn1"))
        y = _conv(y, block.width, 3, block.stride, f"{p}_conv2")
        y = keras.layers.ReLU(name=f"{p}_relu2")(_bn(y, f"{p}_bn2"))
        y = _bn(_conv(y, block.out_channels, 1, 1, f"{p}_conv3"), f"{p}_bn3")
    if make_module is not None:
        y = make_module(f"{p}_rclb")(y)
    shortcut = x
    if block.projection:
        shortcut = _conv(x, block.out_channels, 1, block.stride, f"{p}_downsample_0")
        shortcut = _bn(shortcut, f"{p}_downsample_1")
    y = keras.layers.Add(name=f"{p}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{p}_relu")(y)


def check_arguments(num_classes, input_shape, include_top):
    v.check_int("num_classes", num_classes, minimum=1)
    v.check_bool("include_top", include_top)
    shape = input_shape
    if (
        not isinstance(shape, (tuple, list))
        or len(shape) != 3
        or isinstance(shape[-1], bool)
        or not isinstance(shape[-1], int)
        or shape[-1] < 1
        or any(
            s is not None and (isinstance(s, bool) or not isinstance(s, int) or s < 1)
            for s in shape[:2]
        )
    ):
        raise ValueError(
            "Argument `input_shape` must be (height, width, channels) with a known channel "
            f"count (height and width may be None). Received: input_shape={input_shape!r}"
        )
    return tuple(shape)


def build_from_plan(plan, recalibration, num_classes, input_shape, include_top, name, kwargs):
    input_shape = check_arguments(num_classes, input_shape, include_top)
    make_module = module_factory(recalibration, kwargs)
    inputs = keras.Input(input_shape, name="input")
    if plan.stem == "imagenet":
        x = _conv(inputs, plan.stem_channels, 7, 2, "conv1")
        x = keras.layers.ReLU(name="relu")(_bn(x, "bn1"))
        # Zero padding stands in for PyTorch's -inf padding: the input follows a ReLU, so no
        # window's maximum changes.
        x = keras.layers.ZeroPadding2D(1, name="maxpool_pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, name="maxpool")(x)
    else:
        x = _conv(inputs, plan.stem_channels, 3, 1, "conv1")
        x = keras.layers.ReLU(name="relu")(_bn(x, "bn1"))
    for block in plan.blocks:
        x = _block(x, block, make_module)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
        x = keras.layers.Dense(num_classes, name="fc")(x)
    return keras.Model(inputs, x, name=name)


def _model_name(prefix, depth, recalibration):
    if recalibration is None:
        return f"{prefix}{depth}"
    label = recalibration if isinstance(recalibration, str) else "rclb"
    return f"{label.lower()}_{prefix}{depth}"


def resnet(
    depth,
    recalibration=None,
    num_classes=1000,
    input_shape=(224, 224, 3),
    include_top=True,
    **recalibration_kwargs,
):
    """A torchvision ResNet with a recalibration module on every residual branch.

    The topology is torchvision's: bias-free convolutions, batch normalisation with PyTorch's
    epsilon 1e-5 and momentum (Keras 0.9), BasicBlocks for depths 18 and 34, Bottlenecks with
    the stride on the 3x3 convolution (v1.5) for 50, 101 and 152, and 1x1 convolution + batch
    normalisation projections where the shape changes. Stride-2 convolutions and the max pool
    are zero-padded symmetrically as PyTorch pads them, so the outputs match torchvision's for
    the same weights. The module sits after the last batch normalisation of each residual
    branch, before the addition, as in the official SRM code.

    Args:
        depth: int, 18, 34, 50, 101 or 152.
        recalibration: `None` (plain ResNet), a name `keras_recalib.get` accepts (`"srm"`,
            `"se"`, ...), a layer class, or a callable returning a new layer; it is called once
            per block with `**recalibration_kwargs`. Defaults to `None`.
        num_classes: int, outputs of the final dense layer (logits, no softmax). Defaults to
            `1000`.
        input_shape: `(height, width, channels)`; height and width may be `None`. Defaults to
            `(224, 224, 3)`.
        include_top: bool, end with global average pooling and the dense layer; `False`
            returns the last feature map. Defaults to `True`.
        **recalibration_kwargs: arguments of every module (e.g. `unbiased=True`).

    Returns:
        A functional `keras.Model`. Layer names follow torchvision's module paths with `_` for
        `.`: `conv1`, `bn1`, `layer1_0_conv1`, `layer1_0_downsample_0`, the module
        `layer1_0_rclb`, `fc`.

    Example:

    >>> model = resnet(18, "srm", num_classes=10, input_shape=(64, 64, 3))
    """
    plan = resnet_plan(depth)
    return build_from_plan(
        plan,
        recalibration,
        num_classes,
        input_shape,
        include_top,
        _model_name("resnet", depth, recalibration),
        recalibration_kwargs,
    )


def cifar_resnet(
    depth,
    recalibration=None,
    num_classes=10,
    input_shape=(32, 32, 3),
    include_top=True,
    **recalibration_kwargs,
):
    """A CIFAR ResNet (depth 6n + 2: 20, 32, 44, 56, 110) with a module on every branch.

    He et al.'s CIFAR network: a 3x3 convolution with 16 channels, three stages of n
    BasicBlocks with 16, 32 and 64 channels (the first block of stages 2 and 3 has stride 2),
    global average pooling and a dense layer. The official SRM repository publishes no CIFAR
    code; where the channel count changes the shortcut is a 1x1 convolution + batch
    normalisation projection (the paper's option B, as in the ImageNet ResNets) rather than
    option A's zero-padded identity. Naming and module placement are those of `resnet`.

    Args:
        depth: int, 6n + 2 for n >= 1.
        recalibration: as in `resnet`. Defaults to `None`.
        num_classes: int. Defaults to `10`.
        input_shape: `(height, width, channels)`. Defaults to `(32, 32, 3)`.
        include_top: bool. Defaults to `True`.
        **recalibration_kwargs: arguments of every module.

    Returns:
        A functional `keras.Model`.
    """
    plan = cifar_plan(depth)
    return build_from_plan(
        plan,
        recalibration,
        num_classes,
        input_shape,
        include_top,
        _model_name("cifar_resnet", depth, recalibration),
        recalibration_kwargs,
    )


def _shorthand(depth):
    def build(
        recalibration=None,
        num_classes=1000,
        input_shape=(224, 224, 3),
        include_top=True,
        **recalibration_kwargs,
    ):
        return resnet(
            depth, recalibration, num_classes, input_shape, include_top, **recalibration_kwargs
        )

    build.__name__ = build.__qualname__ = f"resnet{depth}"
    build.__doc__ = f"`resnet({depth}, ...)`: see `resnet`."
    return build


resnet18 = _shorthand(18)
resnet34 = _shorthand(34)
resnet50 = _shorthand(50)
resnet101 = _shorthand(101)
resnet152 = _shorthand(152)

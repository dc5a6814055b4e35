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

import keras

from keras_recalib import _registry
from keras_recalib import _validation as v
from keras_recalib._conventions import fan_out_normal, torch_padding
from keras_recalib.models._lean import RecomputedBranchAdd
from keras_recalib.models.plan import CIFAR_DEPTHS as CIFAR_DEPTHS  # re-exported
from keras_recalib.models.plan import RESNET_DEPTHS as RESNET_DEPTHS  # read by the zoo command
from keras_recalib.models.plan import cifar_plan, resnet_plan

# PyTorch's BatchNorm2d defaults (momentum 0.1 is Keras' 0.9).
_BN_EPSILON = 1e-5
_BN_MOMENTUM = 0.9


def _conv_bn(x, step):
    """One `plan.ConvBN` step: convolution, batch normalisation, ReLU where the plan has one."""
    return _bn_relu(_conv(x, step), step)


def _conv(x, step):
    """The convolution of a `plan.ConvBN` step.

    Keras' "same" pads stride-2 convolutions asymmetrically (0 before, 1 after on even sizes);
    PyTorch pads both sides, so those get explicit zero padding and "valid".
    """
    pad, padding = torch_padding(step.kernel, step.stride)
    if pad:
        x = keras.layers.ZeroPadding2D(pad, name=f"{step.conv}_pad")(x)
    return keras.layers.Conv2D(
        step.filters,
        step.kernel,
        strides=step.stride,
        padding=padding,
        use_bias=False,
        # torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu").
        kernel_initializer=fan_out_normal(),
        name=step.conv,
    )(x)


def _bn_relu(x, step):
    x = keras.layers.BatchNormalization(
        axis=-1, momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON, name=step.bn
    )(x)
    if step.relu:
        x = keras.layers.ReLU(name=step.relu)(x)
    return x


def _block(x, block, make_module, memory_lean):
    y = x
    for step in block.branch[:-1]:
        y = _conv_bn(y, step)
    last = block.branch[-1]  # no ReLU: the module follows its batch normalisation
    z = _conv(y, last)
    y = _bn_relu(z, last)
    if make_module is not None:
        y = make_module(block.module)(y)
    shortcut = x if block.shortcut is None else _conv_bn(x, block.shortcut)
    if memory_lean:
        y = RecomputedBranchAdd(name=block.add)([y, shortcut, z])
    else:
        y = keras.layers.Add(name=block.add)([y, shortcut])
    return keras.layers.ReLU(name=block.relu)(y)


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


def check_memory_lean(memory_lean, recalibration):
    memory_lean = v.check_bool("memory_lean", memory_lean)
    if not memory_lean:
        return False
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise ValueError(
            "memory_lean=True needs the TensorFlow backend (its recomputed gradient is a "
            f"tf.custom_gradient). Received: backend={backend}"
        )
    if recalibration is None:
        raise ValueError(
            "memory_lean=True recomputes the recalibration modules' inputs; a plain ResNet "
            "(recalibration=None) has none and is already lean. Received: memory_lean=True, "
            "recalibration=None"
        )
    return True


def build_from_plan(
    plan, recalibration, num_classes, input_shape, include_top, name, kwargs, memory_lean=False
):
    input_shape = check_arguments(num_classes, input_shape, include_top)
    memory_lean = check_memory_lean(memory_lean, recalibration)
    make_module = _registry.module_factory(recalibration, kwargs)
    inputs = keras.Input(input_shape, name="input")
    x = _conv_bn(inputs, plan.stem)
    if plan.pool is not None:
        # Zero padding stands in for PyTorch's -inf padding: the input follows a ReLU, so no
        # window's maximum changes.
        pool = plan.pool
        x = keras.layers.ZeroPadding2D(pool.padding, name=f"{pool.name}_pad")(x)
        x = keras.layers.MaxPooling2D(pool.pool, strides=pool.stride, name=pool.name)(x)
    for block in plan.blocks:
        x = _block(x, block, make_module, memory_lean)
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
    memory_lean=False,
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
        memory_lean: bool, recompute each branch's last batch normalisation and its module
            from the convolution output in the backward pass instead of keeping the
            normalisation's output: in graph-mode training, the peak memory of the plain
            network, for a little more time per step (XLA needs no help; TensorFlow only;
            needs a `recalibration`; see docs/models.md, "Memory-lean training"). Outputs,
            gradients, moving statistics, weights and layer names are the normal model's.
            Defaults to `False`.
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
        memory_lean,
    )


def cifar_resnet(
    depth,
    recalibration=None,
    num_classes=10,
    input_shape=(32, 32, 3),
    include_top=True,
    memory_lean=False,
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
        memory_lean: bool, as in `resnet`. Defaults to `False`.
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
        memory_lean,
    )


def _shorthand(depth):
    def build(
        recalibration=None,
        num_classes=1000,
        input_shape=(224, 224, 3),
        include_top=True,
        memory_lean=False,
        **recalibration_kwargs,
    ):
        return resnet(
            depth,
            recalibration,
            num_classes,
            input_shape,
            include_top,
            memory_lean,
            **recalibration_kwargs,
        )

    build.__name__ = build.__qualname__ = f"resnet{depth}"
    build.__doc__ = f"`resnet({depth}, ...)`: see `resnet`."
    return build


resnet18 = _shorthand(18)
resnet34 = _shorthand(34)
resnet50 = _shorthand(50)
resnet101 = _shorthand(101)
resnet152 = _shorthand(152)

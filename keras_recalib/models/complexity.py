"""Parameter and multiply-accumulate (MAC) counts, as the papers' complexity tables give them.

Counting rules:

- Parameters are counted as PyTorch counts them: the trainable weights (no batch-norm moving
  statistics).
- The backbone's MACs are those of its convolutions and dense layers: one MAC per
  multiply-accumulate of a kernel weight with an input value (`H_out * W_out * k_h * k_w *
  C_in / groups * C_out` for a convolution, `in * out` for a dense layer). Batch normalisation,
  activations, pooling and the residual additions are not counted (inference folds batch
  normalisation into the convolutions; the rest is a small fraction), as in torchvision's
  4.1 GMACs for ResNet-50.
- A recalibration module is counted in full from its inference graph (`training=False`,
  batch 1): convolutions and matrix products as above, one MAC per element of an elementwise
  product or quotient (including the final input * gate and a batch normalisation's scale),
  one per element entering a sum or mean reduction or an average pool window. Additions,
  comparisons (max), and unary functions (sigmoid, square root) are not counted.
"""

import collections
import math

import keras
import numpy as np
import tensorflow as tf

from keras_recalib.layers._base import RecalibrationLayer
from keras_recalib.models.resnet import check_arguments, module_factory, resnet_plan

_PRODUCTS = {"Mul", "RealDiv", "Div", "DivNoNan", "SquaredDifference", "Square", "MulNoNan"}
_REDUCTIONS = {"Mean", "Sum"}
_BATCH_NORMS = {"FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"}


def _size(shape):
    return int(np.prod([int(d) for d in shape])) if len(shape) else 1


def trainable_parameters(layer_or_model):
    """The number of trainable scalars: what PyTorch's `sum(p.numel() for p in ...)` gives."""
    return sum(_size(w.shape) for w in layer_or_model.trainable_weights)


def _attr(op, name):
    try:
        return op.get_attr(name)
    except ValueError:
        return False


def _graph_macs(graph):
    total = 0
    for op in graph.get_operations():
        kind = op.type
        if kind in ("StatefulPartitionedCall", "PartitionedCall"):
            name = op.get_attr("f").name
            total += _graph_macs(graph._get_function(name).graph)
            continue
        if not op.outputs:
            continue
        out = op.outputs[0].shape
        if not out.is_fully_defined():
            raise ValueError(f"Cannot count MACs of {op.name!r}: unknown shape {out}")
        if kind == "Conv2D":
            kh, kw, cin, _ = op.inputs[1].shape
            total += _size(out) * kh * kw * cin
        elif kind == "DepthwiseConv2dNative":
            kh, kw, _, _ = op.inputs[1].shape
            total += _size(out) * kh * kw
        elif kind in ("MatMul", "BatchMatMulV2", "BatchMatMulV3", "BatchMatMul"):
            a = op.inputs[0].shape
            transposed = _attr(op, "transpose_a") or _attr(op, "adj_x")
            inner = a[-2] if transposed else a[-1]
            total += _size(out) * int(inner)
        elif kind in _PRODUCTS:
            total += _size(out)
        elif kind in _REDUCTIONS:
            total += _size(op.inputs[0].shape)
        elif kind == "AvgPool":
            ksize = op.get_attr("ksize")
            total += _size(out) * ksize[1] * ksize[2]
        elif kind in _BATCH_NORMS:
            total += _size(out)
    return total


def module_macs(layer, input_shape):
    """MACs of one call of a built or unbuilt `layer` on a (1, H, W, C) input, in inference.

    Builds the layer on `input_shape` if needed (batch forced to 1).
    """
    shape = (1, *tuple(int(d) for d in input_shape[1:]))
    if not layer.built:
        layer(np.zeros(shape, "float32"))
    function = tf.function(lambda x: layer(x, training=False), autograph=False)
    graph = function.get_concrete_function(tf.TensorSpec(shape, layer.compute_dtype)).graph
    return _graph_macs(graph)


def module_cost(make_layer, input_shape):
    """(trainable parameters, MACs) of a new layer from `make_layer()` on `input_shape`
    (height, width, channels)."""
    layer = make_layer()
    shape = (1, *input_shape)
    layer(np.zeros(shape, "float32"))
    return trainable_parameters(layer), module_macs(layer, shape)


_CONVOLUTIONS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
)


def _conv_macs(layer, output_shape):
    kernel = layer.kernel.shape
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return _size(output_shape[1:]) * kernel[0] * kernel[1]
    if isinstance(layer, keras.layers.SeparableConv2D):
        depthwise = layer.depthwise_kernel.shape
        pointwise = layer.pointwise_kernel.shape
        spatial = _size(output_shape[1:-1])
        return spatial * (depthwise[2] * depthwise[3] * depthwise[0] * depthwise[1]) + (
            spatial * pointwise[2] * pointwise[3]
        )
    # (k_h, k_w, C_in / groups, C_out): every output element takes k_h * k_w * C_in / groups.
    return _size(output_shape[1:]) * math.prod(int(d) for d in kernel[:-1])


def count_macs(model):
    """MACs of one image through a built functional `model` with a fixed input size.

    Follows the module docstring's rules: convolutions and dense layers of the network, plus
    every recalibration layer (any `keras_recalib` layer) counted from its inference graph.
    """
    total = 0
    # The model's own calls only: a layer shared with another model has more inbound nodes.
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            layer = node.operation
            if layer is None or node.is_input:
                continue
            out_shape = tuple(node.outputs[0].shape)
            if any(d is None for d in out_shape[1:]):
                raise ValueError(
                    "count_macs needs a model with a fixed input size. "
                    f"Received: layer {layer.name!r} with output shape {out_shape}"
                )
            if isinstance(layer, RecalibrationLayer):
                total += module_macs(layer, tuple(node.input_tensors[0].shape))
            elif isinstance(layer, _CONVOLUTIONS):
                total += _conv_macs(layer, out_shape)
            elif isinstance(layer, keras.layers.Dense):
                total += _size(out_shape[1:]) * int(layer.kernel.shape[0])
            elif isinstance(layer, keras.Model):
                total += count_macs(layer)
    return total


def _out_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def plan_complexity(plan, input_shape, num_classes, include_top, make_module, cache=None):
    """(trainable parameters, MACs) of a `Plan` without building the network.

    Modules are built once per distinct (height, width, channels) and their costs reused.
    """
    height, width, channels = input_shape
    params = macs = 0

    def conv(h, w, cin, cout, kernel, stride):
        nonlocal params, macs
        h, w = (_out_size(s, kernel, stride, kernel // 2) for s in (h, w))
        params += kernel * kernel * cin * cout
        macs += h * w * kernel * kernel * cin * cout
        return h, w

    def bn(c):
        nonlocal params
        params += 2 * c

    if plan.stem == "imagenet":
        h, w = conv(height, width, channels, plan.stem_channels, 7, 2)
        h, w = (_out_size(s, 3, 2, 1) for s in (h, w))
    else:
        h, w = conv(height, width, channels, plan.stem_channels, 3, 1)
    bn(plan.stem_channels)
    cache = {} if cache is None else cache
    for block in plan.blocks:
        cin, out = block.in_channels, block.out_channels
        if block.kind == "basic":
            ho, wo = conv(h, w, cin, block.width, 3, block.stride)
            conv(ho, wo, block.width, block.width, 3, 1)
            bn(block.width)
            bn(block.width)
        else:
            conv(h, w, cin, block.width, 1, 1)
            ho, wo = conv(h, w, block.width, block.width, 3, block.stride)
            conv(ho, wo, block.width, out, 1, 1)
            bn(block.width)
            bn(block.width)
            bn(out)
        if block.projection:
            conv(h, w, cin, out, 1, block.stride)
            bn(out)
        if make_module is not None:
            key = (ho, wo, out)
            if key not in cache:
                cache[key] = module_cost(lambda: make_module("probe"), key)
            params += cache[key][0]
            macs += cache[key][1]
        h, w = ho, wo
    if include_top:
        params += plan.features * num_classes + num_classes
        macs += plan.features * num_classes
    return params, macs


Complexity = collections.namedtuple("Complexity", ["params", "macs"])


def resnet_complexity(
    depth,
    recalibration=None,
    num_classes=1000,
    input_shape=(224, 224, 3),
    include_top=True,
    **recalibration_kwargs,
):
    """Trainable parameters and MACs of `resnet(depth, recalibration, ...)`, without building it.

    Counted from the network's layout by the rules of this module's docstring; each module is
    built and traced once per distinct (height, width, channels), so this takes well under a
    second where building ResNet-101 takes several. Equals `trainable_parameters(model)` and
    `count_macs(model)` of the built network.

    Returns:
        `Complexity(params, macs)`, two ints.
    """
    plan = resnet_plan(depth)
    input_shape = check_arguments(num_classes, input_shape, include_top)
    if any(d is None for d in input_shape):
        raise ValueError(
            f"Counting MACs needs a fixed input size. Received: input_shape={tuple(input_shape)!r}"
        )
    make_module = module_factory(recalibration, recalibration_kwargs)
    return Complexity(*plan_complexity(plan, input_shape, num_classes, include_top, make_module))

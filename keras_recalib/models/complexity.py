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

from keras_recalib import _graph_internals, _registry
from keras_recalib.layers._base import RecalibrationLayer
from keras_recalib.models.plan import resnet_plan
from keras_recalib.models.resnet import check_arguments

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
            total += _graph_macs(_graph_internals.function_graph(graph, name))
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
    # The model's own calls only: a layer shared with another model has more calls.
    for call in _graph_internals.calls(model):
        layer = call.operation
        out_shape = tuple(call.outputs[0].shape)
        if any(d is None for d in out_shape[1:]):
            raise ValueError(
                "count_macs needs a model with a fixed input size. "
                f"Received: layer {layer.name!r} with output shape {out_shape}"
            )
        if isinstance(layer, RecalibrationLayer):
            total += module_macs(layer, tuple(call.inputs[0].shape))
        elif isinstance(layer, _CONVOLUTIONS):
            total += _conv_macs(layer, out_shape)
        elif isinstance(layer, keras.layers.Dense):
            total += _size(out_shape[1:]) * int(layer.kernel.shape[0])
        elif isinstance(layer, keras.Model):
            total += count_macs(layer)
    return total


def plan_complexity(plan, input_shape, num_classes, include_top, make_module, cache=None):
    """(trainable parameters, MACs) of a `Plan` without building the network.

    Walks the same steps `resnet.build_from_plan` builds. Modules are built once per distinct
    (height, width, channels) and their costs reused.
    """
    params = macs = 0

    def conv_bn(h, w, channels, step):
        nonlocal params, macs
        h, w = step.output_size(h), step.output_size(w)
        kernel = step.kernel * step.kernel * channels * step.filters
        params += kernel + 2 * step.filters  # the batch normalisation's scale and shift
        macs += h * w * kernel
        return h, w, step.filters

    h, w, channels = conv_bn(*input_shape, plan.stem)
    if plan.pool is not None:
        h, w = plan.pool.output_size(h), plan.pool.output_size(w)
    cache = {} if cache is None else cache
    for block in plan.blocks:
        shape = (h, w, channels)
        for step in block.branch:
            shape = conv_bn(*shape, step)
        if block.shortcut is not None:
            conv_bn(h, w, channels, block.shortcut)
        if make_module is not None:
            if shape not in cache:
                cache[shape] = module_cost(lambda: make_module("probe"), shape)
            params += cache[shape][0]
            macs += cache[shape][1]
        h, w, channels = shape
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
    make_module = _registry.module_factory(recalibration, recalibration_kwargs)
    return Complexity(*plan_complexity(plan, input_shape, num_classes, include_top, make_module))

"""SGE: Spatial Group-wise Enhance.

Li, Hu and Yang, "Spatial Group-wise Enhance: Improving Semantic Feature Learning in
Convolutional Networks", 2019 (https://arxiv.org/abs/1905.09646). Semantics follow the official
code, implus/PytorchInsight (`classification/models/imagenet/resnet_sge.py`,
`SpatialGroupEnhance`).
"""

import keras

from keras_recalib import _validation as v
from keras_recalib import ops
from keras_recalib._validation import InitializerLike, RegularizerLike
from keras_recalib.layers._base import RecalibrationLayer


@keras.saving.register_keras_serializable(package="keras_recalib")
class SpatialGroupEnhance(RecalibrationLayer):
    """Spatial group-wise enhance (SGE): a per-position gate for each group of channels.

    The channels are split into `groups` contiguous groups. In each group, every position's
    feature vector is compared with the group's spatially averaged feature (the dot product
    over the group's channels); these similarity maps are normalised over the positions
    (minus their mean, divided by their unbiased std plus 1e-5), scaled and shifted by a
    per-group weight and bias and squashed with a sigmoid. Each group's channels are multiplied
    by their group's gate map.

    Where the official code and its copies differ:

    - Initial values: the official code starts the weight at zeros and the bias at **ones**
      (initial gate sigmoid(1) ~ 0.73, the default here); the seed document's copy starts both at
      zeros (`bias_initializer="zeros"`, initial gate 0.5).
    - The normalisation divides by `std + 1e-5` with the unbiased (HW - 1) std, as the official
      code does, rather than `sqrt(var + eps)`. On a 1x1 map the unbiased std of one value is
      defined as 0 (PyTorch gives NaN), so the normalised map is 0 and the gate
      sigmoid(bias): the output stays finite.

    Args:
        groups: int, number of channel groups; must divide the channel count. Defaults to `64`
            (the official ResNet setting).
        weight_initializer: initializer of the `(groups,)` scale. Defaults to `"zeros"`.
        bias_initializer: initializer of the `(groups,)` shift. Defaults to `"ones"`.
        weight_regularizer: optional regularizer of the scale. Defaults to `None`.
        bias_regularizer: optional regularizer of the shift. Defaults to `None`.

    Input shape:
        `(batch, height, width, channels)` with `channels` divisible by `groups`. Integer inputs
        are cast to the compute dtype.

    Output shape:
        Same as the input, in the layer's compute dtype.

    Example:

    >>> x = keras.Input((None, None, 256))
    >>> y = keras_recalib.SpatialGroupEnhance(groups=64)(x)

    Reference:
        https://arxiv.org/abs/1905.09646
    """

    def __init__(
        self,
        groups: int = 64,
        weight_initializer: InitializerLike = "zeros",
        bias_initializer: InitializerLike = "ones",
        weight_regularizer: RegularizerLike | None = None,
        bias_regularizer: RegularizerLike | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.groups = v.check_int("groups", groups, minimum=1)
        self.weight_initializer = v.get_initializer("weight_initializer", weight_initializer)
        self.bias_initializer = v.get_initializer("bias_initializer", bias_initializer)
        self.weight_regularizer = v.get_regularizer("weight_regularizer", weight_regularizer)
        self.bias_regularizer = v.get_regularizer("bias_regularizer", bias_regularizer)

    def build(self, input_shape):
        channels = self._check_input_shape(input_shape)
        if channels % self.groups:
            raise ValueError(
                f"Argument `groups` must divide the number of channels ({channels}). "
                f"Received: groups={self.groups}"
            )
        # The official (1, groups, 1, 1) parameters, flattened.
        self.weight = self.add_weight(
            name="weight",
            shape=(self.groups,),
            initializer=self.weight_initializer,
            regularizer=self.weight_regularizer,
        )
        self.bias = self.add_weight(
            name="bias",
            shape=(self.groups,),
            initializer=self.bias_initializer,
            regularizer=self.bias_regularizer,
        )

    def _gate(self, inputs):
        """The (batch, height * width, groups) gate in [0, 1], in the statistics dtype."""
        x = self._prepare_input(inputs)
        dtype = self._stats_dtype
        # Squares of large float16 activations overflow: the similarity is computed in float32.
        grouped = self._grouped(keras.ops.cast(x, dtype))
        context = keras.ops.mean(grouped, axis=1, keepdims=True)
        similarity = keras.ops.sum(grouped * context, axis=-1)
        mean, var = ops.axis_moments(similarity, 1)
        var = var * ops.bessel_factor(ops.spatial_count(similarity, axes=(1,)), dtype)
        # The official 1 / (std + 1e-5), as rsqrt of its square: int8 TFLite's DIV aborts on a
        # divisor that quantises to zero, RSQRT does not.
        scale = ops.safe_sqrt(var) + keras.ops.convert_to_tensor(1e-5, dtype)
        normalised = (similarity - mean) * keras.ops.rsqrt(scale * scale)
        z = normalised * keras.ops.cast(self.weight, dtype) + keras.ops.cast(self.bias, dtype)
        return keras.ops.sigmoid(z)

    def _grouped(self, x):
        # (B, H, W, C) -> (B, H*W, G, C/G): rank 4 keeps TFLite's reshape and broadcast ops happy.
        shape = keras.ops.shape(x)
        channels = x.shape[-1]
        return keras.ops.reshape(
            x, [shape[0], shape[1] * shape[2], self.groups, channels // self.groups]
        )

    def call(self, inputs):
        x = self._prepare_input(inputs)
        gate = keras.ops.cast(self._gate(x), x.dtype)
        y = ops.gate_product(self._grouped(x), keras.ops.expand_dims(gate, -1))
        return keras.ops.reshape(y, keras.ops.shape(x))

    def gates(self, inputs, training: bool = False) -> dict:
        """`{"spatial": gate}`, the gate of each group repeated over the group's channels:
        (batch, height, width, channels)."""
        x = self._prepare_input(inputs)
        gate = keras.ops.repeat(self._gate(x), x.shape[-1] // self.groups, axis=-1)
        shape = keras.ops.shape(x)
        return {"spatial": keras.ops.reshape(gate, [shape[0], shape[1], shape[2], x.shape[-1]])}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "groups": self.groups,
                "weight_initializer": keras.initializers.serialize(self.weight_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "weight_regularizer": keras.regularizers.serialize(self.weight_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            }
        )
        return config

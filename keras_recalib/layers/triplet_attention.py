"""Triplet Attention.

Misra, Nalamada, Arasanipalai and Hou, "Rotate to Attend: Convolutional Triplet Attention
Module", WACV 2021 (https://arxiv.org/abs/2010.03045). Semantics follow the official code,
landskape-ai/triplet-attention (`triplet_attention.py` at the repository root, `TripletAttention`
with branches `cw`, `hc`, `hw`; `MODELS/triplet_attention.py` holds the same module under the
names `ChannelGateH`, `ChannelGateW`, `SpatialGate`).
"""

import keras

from keras_recalib import _validation as v
from keras_recalib import ops
from keras_recalib._validation import InitializerLike, RegularizerLike
from keras_recalib.layers._base import RecalibrationLayer
from keras_recalib.layers._blocks import zpool_gate

# In the official NCHW code the `cw` branch pools over H and convolves the (C, W) plane, the
# `hc` branch pools over W and convolves the (H, C) plane, the `hw` branch pools over C and
# convolves the (H, W) plane. Here each pooled NHWC map stays in its memory order, as a plane
# (the pooled size-1 axis moved last: a reshape, no data moved), and the `cw` kernel is
# transposed instead, since that plane is (W, C) in NHWC order.
_BRANCHES = {
    # name: (pooled axis, pooled map -> plane, plane -> pooled map, kernel transposed)
    "cw": (1, (0, 2, 3, 1), (0, 3, 1, 2), True),  # (B, 1, W, C) <-> (B, W, C, 1)
    "hc": (2, (0, 1, 3, 2), (0, 1, 3, 2), False),  # (B, H, 1, C) <-> (B, H, C, 1)
    "hw": (3, None, None, False),  # (B, H, W, 1) already
}


@keras.saving.register_keras_serializable(package="keras_recalib")
class TripletAttention(RecalibrationLayer):
    """Triplet attention: three gates over the (C, W), (H, C) and (H, W) planes, averaged.

    Each branch "rotates" the input so that one axis becomes the pooled one, Z-pools it (the
    max and the mean over that axis, in that order, as two maps), convolves the two maps with
    a `kernel_size` x `kernel_size` kernel (no bias, zero padding) to one map, batch-normalises
    it and takes a sigmoid; the input times that gate is rotated back. Branch `cw` pools over
    the height and gates the (channels, width) plane, branch `hc` pools over the width and gates
    the (height, channels) plane, branch `hw` pools over the channels and gates the
    (height, width) plane like CBAM's spatial gate. The output is the mean of the three branches
    (of the first two with `use_spatial=False`, the official `no_spatial=True`). The layer has
    no channel-dependent weights: 2 * kernel_size**2 + 2 per branch.

    With `training=False` (or a frozen layer) each branch's normalisation is folded into its
    kernel and one bias.

    Where the sources differ:

    - The paper writes a k x k convolution; the official code fixes k = 7, the default here.
    - Normalisation: the official `BasicConv` uses `BatchNorm2d(eps=1e-5, momentum=0.01)`,
      i.e. Keras momentum 0.99, the default here (not PyTorch's usual 0.1).
    - Initialisation: the official ResNet training (`MODELS/resnet.py`) draws every
      convolution kernel from normal(0, sqrt(2 / fan_out)) and zeroes the scale of every
      BatchNorm whose name contains "SpatialGate", i.e. of the `hw` branch only, so that gate
      starts at sigmoid(0) = 0.5; both are the defaults here (`spatial_gamma_initializer`).
      The two channel branches' scales start at one.
    - `load_torch_weights` reads the root file's names (`cw.conv.conv.weight`, ...) and the
      `MODELS/` file's names (`ChannelGateH.spatial.conv.weight`, ...).

    Args:
        kernel_size: odd int, size of the square convolution of every branch. Defaults to `7`.
        use_spatial: bool, include the (height, width) branch; `False` averages only the two
            channel branches (the official `no_spatial=True`), and `spatial_gamma_initializer`
            must then keep its default (a `ValueError` otherwise). Defaults to `True`.
        synchronized: bool, synchronise the batch statistics across replicas under
            `tf.distribute`. Defaults to `False`.
        momentum: float, moving-average momentum of the normalisations in Keras' convention
            (the official PyTorch momentum 0.01 is Keras' 0.99). Defaults to `0.99`.
        norm_epsilon: float, epsilon of the normalisations. Defaults to `1e-5`.
        spatial_gamma_initializer: initializer of the `hw` branch's normalisation scale (not
            `None`). Defaults to `"zeros"` (the official training); `"ones"` is PyTorch's
            default.
        kernel_initializer: initializer of the (kernel_size, kernel_size, 2, 1) kernels.
            Defaults to `None`, the official training's normal with std sqrt(2 / fan_out).
        kernel_regularizer: optional regularizer of those kernels. Defaults to `None`.

    Input shape:
        `(batch, height, width, channels)`. Integer inputs are cast to the compute dtype.

    Output shape:
        Same as the input, in the layer's compute dtype.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = keras_recalib.TripletAttention()(x)

    Reference:
        https://arxiv.org/abs/2010.03045
    """

    gates_combined_by = "mean"

    def __init__(
        self,
        kernel_size: int = 7,
        use_spatial: bool = True,
        synchronized: bool = False,
        momentum: float = 0.99,
        norm_epsilon: float = 1e-5,
        spatial_gamma_initializer: InitializerLike = "zeros",
        kernel_initializer: InitializerLike | None = None,
        kernel_regularizer: RegularizerLike | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        # An even kernel with the official padding (k - 1) // 2 shrinks the map by one.
        self.kernel_size = v.check_int("kernel_size", kernel_size, minimum=1, odd=True)
        self.use_spatial = v.check_bool("use_spatial", use_spatial)
        self._set_batch_norm_arguments(synchronized, momentum, norm_epsilon)
        self.spatial_gamma_initializer = v.get_initializer(
            "spatial_gamma_initializer", spatial_gamma_initializer
        )
        # MODELS/resnet.py: every `conv` weight gets kaiming_normal_(mode="fan_out").
        self.kernel_initializer = v.initializer_or_fan_out("kernel_initializer", kernel_initializer)
        self.kernel_regularizer = v.get_regularizer("kernel_regularizer", kernel_regularizer)
        if not self.use_spatial:
            v.refuse_inactive(
                TripletAttention,
                "use_spatial=False",
                spatial_gamma_initializer=spatial_gamma_initializer,
            )

    @property
    def branch_names(self):
        """The official names of the active branches, in the official order."""
        return ("cw", "hc", "hw") if self.use_spatial else ("cw", "hc")

    def build(self, input_shape):
        self._check_input_shape(input_shape)
        # The gates see 2-channel pooled maps only, so float32 under mixed precision is cheap
        # and keeps the channel mean of large float16 activations from overflowing.
        for name in self.branch_names:
            # Official layout (kernel axis 0 along the plane's first axis): input channel 0
            # filters the max map, channel 1 the mean map.
            kernel = self.add_weight(
                name=f"{name}_kernel",
                shape=(self.kernel_size, self.kernel_size, 2, 1),
                # A copy each, or the branches would start from the same kernel.
                initializer=v.fresh_initializer(self.kernel_initializer),
                regularizer=self.kernel_regularizer,
                dtype=self._stats_dtype,
            )
            gamma = self.spatial_gamma_initializer if name == "hw" else keras.initializers.Ones()
            bn = self._make_batch_norm(f"{name}_bn", (None, None, None, 1), gamma)
            setattr(self, f"{name}_kernel", kernel)
            setattr(self, f"{name}_bn", bn)

    def _branch_gate(self, name, inputs, training=False):
        """Branch `name`'s gate in the statistics dtype, shaped to broadcast over the input:
        (batch, 1, width, channels) for `cw`, (batch, height, 1, channels) for `hc`,
        (batch, height, width, 1) for `hw`."""
        axis, to_plane, from_plane, transposed = _BRANCHES[name]
        x = keras.ops.cast(self._prepare_input(inputs), self._stats_dtype)
        maximum, mean = ops.z_pool(x, axis)
        if to_plane is not None:
            maximum = keras.ops.transpose(maximum, to_plane)
            mean = keras.ops.transpose(mean, to_plane)
        kernel = keras.ops.cast(getattr(self, f"{name}_kernel"), x.dtype)
        if transposed:
            kernel = keras.ops.transpose(kernel, (1, 0, 2, 3))
        bn = getattr(self, f"{name}_bn")
        gate = zpool_gate(maximum, mean, kernel, bn, training and self.trainable)
        if from_plane is not None:
            gate = keras.ops.transpose(gate, from_plane)
        return gate

    def call(self, inputs, training=None):
        x = self._prepare_input(inputs)
        training = bool(training)
        gates = [self._branch_gate(name, x, training=training) for name in self.branch_names]
        # The official mean of the rotated-back outputs, each term scaled first so that the
        # partial sums stay within |x| (no float16 overflow).
        weight = 1.0 / len(gates)
        output = x * keras.ops.cast(gates[0] * weight, x.dtype)
        for gate in gates[1:]:
            # Binary adds rather than tf.add_n: TFLite's ADD_N has no int8 kernel.
            output = output + x * keras.ops.cast(gate * weight, x.dtype)
        return output

    def gates(self, inputs, training: bool = False) -> dict:
        """One gate per branch, by its official name: `cw` (batch, 1, width, channels), `hc`
        (batch, height, 1, channels) and, with `use_spatial`, `hw` (batch, height, width, 1).
        The output is the mean of the input times each."""
        x = self._prepare_input(inputs)
        return {name: self._branch_gate(name, x, training=training) for name in self.branch_names}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_size": self.kernel_size,
                "use_spatial": self.use_spatial,
                **self._batch_norm_config(),
                "spatial_gamma_initializer": keras.initializers.serialize(
                    self.spatial_gamma_initializer
                ),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            }
        )
        return config

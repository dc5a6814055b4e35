"""CBAM: Convolutional Block Attention Module.

Woo, Park, Lee and Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018
(https://arxiv.org/abs/1807.06521). Semantics and parameter names follow the official code,
Jongchan/attention-module (`MODELS/cbam.py`, `CBAM`), and its initialisation
(`MODELS/model_resnet.py`).
"""

from collections.abc import Sequence

import keras

from keras_recalib import _validation as v
from keras_recalib import ops
from keras_recalib._validation import InitializerLike, RegularizerLike
from keras_recalib.layers._base import RecalibrationLayer
from keras_recalib.layers._blocks import ExcitationMLP, zpool_gate

POOL_TYPES = ("avg", "max", "lp", "lse")


def _check_pool_types(value):
    valid = (
        isinstance(value, (list, tuple))
        and len(value) > 0
        and all(isinstance(p, str) and p.lower() in POOL_TYPES for p in value)
        and len({p.lower() for p in value}) == len(value)
    )
    if not valid:
        raise ValueError(
            "Argument `pool_types` must be a non-empty list of distinct names among "
            + ", ".join(repr(p) for p in POOL_TYPES)
            + f". Received: pool_types={value!r}"
        )
    return tuple(p.lower() for p in value)


@keras.saving.register_keras_serializable(package="keras_recalib")
class ConvBlockAttention(ExcitationMLP, RecalibrationLayer):
    """Convolutional Block Attention Module (CBAM): a channel gate, then a spatial gate.

    Channel gate: each channel is pooled over height and width (average and max by default);
    one shared MLP (fully connected to `channels // reduction` units with bias, ReLU, fully
    connected back to `channels` with bias) maps each pooled vector, the results are summed and
    squashed with a sigmoid; the input is multiplied by that per-channel gate. Spatial gate: at
    each position of that result the channel max and the channel mean are stacked (max first),
    convolved with one `k x k` filter (no bias, zero padding `(k - 1) // 2`), batch-normalised
    and squashed with a sigmoid; the output is the channel-gated map times that per-position
    gate.

    With `training=False` (or a frozen layer) the spatial BatchNorm is folded into the filter.

    Where the paper, the official code and copies differ (this layer follows the code):

    - The paper stacks [average; max] for the spatial gate and has no normalisation there; the
      official code stacks [max; mean] and adds a BatchNorm (affine, PyTorch momentum 0.01, so
      Keras momentum 0.99). The order fixes the layout of the convolution's two input channels.
      timm's `CbamModule` stacks [mean; max].
    - The official ResNet initialisation sets that BatchNorm's scale to zero, so the spatial
      gate starts at 0.5 (`spatial_gamma_initializer="zeros"`, the default), and every bias to
      zero (the Keras defaults here).
    - The official `pool_types` also offer `"lp"` (the L2 norm over the map) and `"lse"`
      (log-sum-exp over the map); `use_spatial=False` is the official `no_spatial=True`.
    - Width: the official code leaves `channels // reduction` at 0 when `channels <
      reduction`; here it is at least 1. `bottleneck_channels` sets any other width.

    Args:
        reduction: int, ratio of the input channels to the MLP's hidden width. Defaults to
            `16`.
        bottleneck_channels: optional int, the hidden width; replaces `reduction`, which must
            then keep its default. Defaults to
            `None`.
        spatial_kernel_size: odd int, size of the spatial gate's square filter. Defaults to `7`.
        pool_types: list of the channel gate's poolings, among `"avg"`, `"max"`, `"lp"`,
            `"lse"`. Defaults to `("avg", "max")`.
        use_spatial: bool, apply the spatial gate after the channel gate. With `False` the
            spatial gate's arguments (`spatial_kernel_size`, `synchronized`, `momentum`,
            `norm_epsilon`, `spatial_gamma_initializer`) have no effect and must keep their
            defaults (a `ValueError` otherwise). Defaults to `True`.
        synchronized: bool, synchronise the spatial BatchNorm's batch statistics across
            replicas under `tf.distribute`. Defaults to `False`.
        momentum: float, moving-average momentum of the spatial BatchNorm in Keras' convention.
            Defaults to `0.99` (the official PyTorch momentum 0.01).
        norm_epsilon: float, epsilon of the spatial BatchNorm. Defaults to `1e-5`.
        spatial_gamma_initializer: initializer of the spatial BatchNorm's scale (not `None`).
            Defaults to `"zeros"`.
        kernel_initializer: initializer of the MLP's weight matrices and of the spatial filter
            (not `None`). Defaults to `"glorot_uniform"`.
        kernel_regularizer: optional regularizer of those weights. Defaults to `None`.

    Input shape:
        `(batch, height, width, channels)`. Integer inputs are cast to the compute dtype.

    Output shape:
        Same as the input, in the layer's compute dtype.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = keras_recalib.ConvBlockAttention(reduction=16)(x)

    Reference:
        https://arxiv.org/abs/1807.06521
    """

    def __init__(
        self,
        reduction: int = 16,
        bottleneck_channels: int | None = None,
        spatial_kernel_size: int = 7,
        pool_types: Sequence[str] = ("avg", "max"),
        use_spatial: bool = True,
        synchronized: bool = False,
        momentum: float = 0.99,
        norm_epsilon: float = 1e-5,
        spatial_gamma_initializer: InitializerLike = "zeros",
        kernel_initializer: InitializerLike = "glorot_uniform",
        kernel_regularizer: RegularizerLike | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.reduction = v.check_int("reduction", reduction, minimum=1)
        self.bottleneck_channels = v.check_int(
            "bottleneck_channels", bottleneck_channels, minimum=1, allow_none=True
        )
        if self.bottleneck_channels is not None:
            v.refuse_inactive(
                type(self), "an explicit bottleneck_channels", reduction=self.reduction
            )
        self.spatial_kernel_size = v.check_int(
            "spatial_kernel_size", spatial_kernel_size, minimum=1, odd=True
        )
        self.pool_types = _check_pool_types(pool_types)
        self.use_spatial = v.check_bool("use_spatial", use_spatial)
        self._set_batch_norm_arguments(synchronized, momentum, norm_epsilon)
        self.spatial_gamma_initializer = v.get_initializer(
            "spatial_gamma_initializer", spatial_gamma_initializer
        )
        self.kernel_initializer = v.get_initializer("kernel_initializer", kernel_initializer)
        self.kernel_regularizer = v.get_regularizer("kernel_regularizer", kernel_regularizer)
        if not self.use_spatial:
            v.refuse_inactive(
                ConvBlockAttention,
                "use_spatial=False",
                spatial_kernel_size=spatial_kernel_size,
                synchronized=synchronized,
                momentum=momentum,
                norm_epsilon=norm_epsilon,
                spatial_gamma_initializer=spatial_gamma_initializer,
            )

    def build(self, input_shape):
        channels = self._check_input_shape(input_shape)
        self._build_excitation(channels, self.bottleneck_channels)
        self.spatial_kernel = None
        self.spatial_bn = None
        if self.use_spatial:
            k = self.spatial_kernel_size
            # Input channels in the official order: 0 is the channel max, 1 the channel mean.
            self.spatial_kernel = self.add_weight(
                name="spatial_kernel",
                shape=(k, k, 2, 1),
                initializer=v.fresh_initializer(self.kernel_initializer),
                regularizer=self.kernel_regularizer,
            )
            self.spatial_bn = self._make_batch_norm(
                "spatial_bn", (None, None, None, 1), self.spatial_gamma_initializer
            )

    def _pool(self, x, pool_type):
        if pool_type == "avg":
            return ops.spatial_mean(x)
        if pool_type == "max":
            return keras.ops.max(x, axis=(1, 2))
        if pool_type == "lp":
            # x * x rather than tf.square, which int8 TFLite keeps in float.
            return ops.safe_sqrt(keras.ops.sum(x * x, axis=(1, 2)))
        # "lse", shifted by the (constant-gradient) max so large activations do not overflow.
        peak = keras.ops.stop_gradient(keras.ops.max(x, axis=(1, 2), keepdims=True))
        total = keras.ops.sum(keras.ops.exp(x - peak), axis=(1, 2))
        return keras.ops.log(total) + peak[:, 0, 0, :]

    def _channel_gate(self, inputs):
        """The (batch, channels) channel gate in [0, 1], in the statistics dtype."""
        x = keras.ops.cast(self._prepare_input(inputs), self._stats_dtype)
        # One MLP pass per pooling, summed as the official code (the second bias counts once
        # per pooling). Stacking the pooled vectors into one pass would make int8 TFLite give
        # them one shared scale.
        logits = self._excite(self._pool(x, self.pool_types[0]))
        for pool_type in self.pool_types[1:]:
            logits = logits + self._excite(self._pool(x, pool_type))
        return keras.ops.sigmoid(logits)

    def _spatial_gate(self, inputs, training=False):
        """The (batch, height, width, 1) spatial gate in [0, 1], in the statistics dtype."""
        x = keras.ops.cast(self._prepare_input(inputs), self._stats_dtype)
        # Official ChannelPool: the channel max and mean, as two maps (see `ops.zpool_conv`).
        maximum, mean = ops.z_pool(x, -1)
        kernel = keras.ops.cast(self.spatial_kernel, x.dtype)
        return zpool_gate(maximum, mean, kernel, self.spatial_bn, training and self.trainable)

    def call(self, inputs, training=None):
        x = self._prepare_input(inputs)
        x = ops.channel_scale(x, keras.ops.cast(self._channel_gate(x), x.dtype))
        if self.use_spatial:
            x = x * keras.ops.cast(self._spatial_gate(x, training=bool(training)), x.dtype)
        return x

    def gates(self, inputs, training: bool = False) -> dict:
        """`{"channel": (batch, 1, 1, channels)}` and, with `use_spatial`, `{"spatial":
        (batch, height, width, 1)}`, the latter computed on the channel-gated input as the
        layer applies it."""
        x = self._prepare_input(inputs)
        channel = self._channel_gate(x)
        found = {"channel": channel[:, None, None, :]}
        if self.use_spatial:
            gated = ops.channel_scale(x, keras.ops.cast(channel, x.dtype))
            found["spatial"] = self._spatial_gate(gated, training=training)
        return found

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "reduction": self.reduction,
                "bottleneck_channels": self.bottleneck_channels,
                "spatial_kernel_size": self.spatial_kernel_size,
                "pool_types": list(self.pool_types),
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

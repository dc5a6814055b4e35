"""SRM: Style-based Recalibration Module.

Lee, Kim and Nam, "SRM: A Style-based Recalibration Module for Convolutional Neural Networks",
ICCV 2019 (https://arxiv.org/abs/1903.10829). Semantics follow the official code,
hyunjaelee410/style-based-recalibration-module (`models/recalibration_modules.py`, `SRMLayer`).
"""

import keras

from keras_recalib import _validation as v
from keras_recalib import ops
from keras_recalib._validation import InitializerLike, RegularizerLike
from keras_recalib.layers._base import RecalibrationLayer


@keras.saving.register_keras_serializable(package="keras_recalib")
class StyleRecalibration(RecalibrationLayer):
    """Style-based recalibration (SRM): channel gates from each channel's mean and std.

    Style pooling takes the per-channel mean and standard deviation over height and width;
    style integration weights them with a channel-wise fully connected layer (two weights per
    channel, no bias), batch-normalises the result over the (batch, channels) features and
    squashes it with a sigmoid. The output is the input times that per-channel gate.

    Where the paper and the official code differ:

    - Std: the paper divides the variance by HW (`unbiased=False`, the default here); the
      official PyTorch code uses `torch.std`, i.e. HW - 1 (`unbiased=True`). The seed code adds
      no epsilon (`epsilon=0`), the latest official revision takes `sqrt(var + 1e-5)`
      (`epsilon=1e-5`, the default). On a 1x1 map the unbiased std is defined as 0, so the
      output stays finite where PyTorch gives NaN.
    - The channel-wise weights start at zero as in the official code, so the initial gate is
      sigmoid(BN(0)) = 0.5. The official training applies no weight decay to SRM's parameters:
      leave `kernel_regularizer=None` to match it.

    With `training=False` (or a frozen layer) the batch normalisation is folded into the
    channel-wise weights: the gate is sigmoid(a * mean + b * std + c) with per-channel a, b, c.

    Speed: style pooling is `keras_recalib.ops.spatial_moments` (the semantics of
    `tf.nn.moments` over height and width) and the product `ops.channel_scale`; their fast
    formulations (whole-map pooling in graph mode and exports, one-pass partial sums under XLA,
    analytic gradients) live behind the switch in `keras_recalib.ops`.

    Args:
        epsilon: float, added to the variance before the square root. Defaults to `1e-5`;
            may be 0.
        unbiased: bool, Bessel-corrected std like `torch.std`. Defaults to `False`.
        use_batch_norm: bool, normalise the style features before the sigmoid; `False` is the
            paper's ablation. Defaults to `True`.
        synchronized: bool, synchronise the batch statistics across replicas under
            `tf.distribute` (worth it when the per-replica batch is small). Defaults to `False`.
        momentum: float, moving-average momentum of the normalisation in Keras' convention
            (PyTorch's 0.1 is Keras' 0.9). Defaults to `0.9`.
        norm_epsilon: float, epsilon of the normalisation (PyTorch's default). Defaults to
            `1e-5`. `synchronized`, `momentum` and `norm_epsilon` configure the normalisation:
            with `use_batch_norm=False` they must keep their defaults (a ValueError otherwise).
        kernel_initializer: initializer of the (channels, 2) channel-wise weights. Defaults to
            `"zeros"`.
        kernel_regularizer: optional regularizer of those weights. Defaults to `None`.

    Input shape:
        `(batch, height, width, channels)`. Integer inputs are cast to the compute dtype.

    Output shape:
        Same as the input, in the layer's compute dtype.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = keras_recalib.StyleRecalibration()(x)

    Reference:
        https://arxiv.org/abs/1903.10829
    """

    def __init__(
        self,
        epsilon: float = 1e-5,
        unbiased: bool = False,
        use_batch_norm: bool = True,
        synchronized: bool = False,
        momentum: float = 0.9,
        norm_epsilon: float = 1e-5,
        kernel_initializer: InitializerLike = "zeros",
        kernel_regularizer: RegularizerLike | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.epsilon = v.check_float("epsilon", epsilon, minimum=0.0)
        self.unbiased = v.check_bool("unbiased", unbiased)
        self.use_batch_norm = v.check_bool("use_batch_norm", use_batch_norm)
        self._set_batch_norm_arguments(synchronized, momentum, norm_epsilon)
        self.kernel_initializer = v.get_initializer("kernel_initializer", kernel_initializer)
        self.kernel_regularizer = v.get_regularizer("kernel_regularizer", kernel_regularizer)
        if not self.use_batch_norm:
            v.refuse_inactive(
                StyleRecalibration,
                "use_batch_norm=False",
                synchronized=self.synchronized,
                momentum=self.momentum,
                norm_epsilon=self.norm_epsilon,
            )

    def build(self, input_shape):
        channels = self._check_input_shape(input_shape)
        # Official layout: column 0 weighs the mean, column 1 the std.
        self.cfc = self.add_weight(
            name="cfc",
            shape=(channels, 2),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        self.bn = None
        if self.use_batch_norm:
            self.bn = self._make_batch_norm("bn", (None, channels))

    def style_features(self, inputs):
        """The (batch, channels) mean and std that style pooling extracts."""
        # Squares of large float16 activations overflow: the statistics run in float32.
        x = keras.ops.cast(self._prepare_input(inputs), self._stats_dtype)
        mean, var = ops.spatial_moments(x)
        if self.unbiased:
            var = var * ops.bessel_factor(ops.spatial_count(x), x.dtype)
        return mean, ops.sqrt_plus_epsilon(var, self.epsilon)

    def effective_weights(self):
        """The inference-time affine: per-channel (mean weight, std weight, bias).

        With batch normalisation this is the channel-wise weights with the normalisation's
        moving statistics and scale folded in; without it the bias is zero.
        """
        dtype = self._stats_dtype
        w = keras.ops.cast(self.cfc, dtype)
        if self.bn is None:
            return w[:, 0], w[:, 1], keras.ops.zeros_like(w[:, 0])
        scale, shift = ops.fold_batch_norm(self.bn, dtype)
        return w[:, 0] * scale, w[:, 1] * scale, shift

    def _gate(self, inputs, training=False):
        """The (batch, channels) gate in [0, 1], in the statistics dtype."""
        mean, std = self.style_features(inputs)
        if self.bn is not None and training and self.trainable:
            w = keras.ops.cast(self.cfc, mean.dtype)
            z = self.bn(mean * w[:, 0] + std * w[:, 1], training=True)
        else:
            a, b, c = self.effective_weights()
            z = mean * a + std * b + c
        return keras.ops.sigmoid(z)

    def call(self, inputs, training=None):
        x = self._prepare_input(inputs)
        gate = self._gate(x, training=bool(training))
        return ops.channel_scale(x, keras.ops.cast(gate, x.dtype))

    def gates(self, inputs, training: bool = False) -> dict:
        gate = self._gate(inputs, training=training)
        return {"channel": gate[:, None, None, :]}

    def gate_details(self, inputs) -> dict:
        """The style features (`style_mean`, `style_std`: (batch, channels)) and the effective
        inference weights (`mean_weight`, `std_weight`, `bias`: (channels,))."""
        mean, std = self.style_features(inputs)
        a, b, c = self.effective_weights()
        return {"style_mean": mean, "style_std": std, "mean_weight": a, "std_weight": b, "bias": c}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "epsilon": self.epsilon,
                "unbiased": self.unbiased,
                "use_batch_norm": self.use_batch_norm,
                **self._batch_norm_config(),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            }
        )
        return config

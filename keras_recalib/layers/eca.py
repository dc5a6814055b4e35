"""ECA: Efficient Channel Attention.

Wang, Wu, Zhu, Li, Zuo and Hu, "ECA-Net: Efficient Channel Attention for Deep Convolutional
Neural Networks", CVPR 2020 (https://arxiv.org/abs/1910.03151). Semantics and parameter names
follow the official code, BangguWu/ECANet (`models/eca_module.py`, `eca_layer`); the adaptive
kernel size is the paper's Eq. 12.
"""

import math

import keras

from keras_recalib import _validation as v
from keras_recalib import ops
from keras_recalib._validation import InitializerLike, RegularizerLike
from keras_recalib.layers._base import RecalibrationLayer


def adaptive_kernel_size(channels, gamma=2.0, beta=1.0):
    """The paper's kernel size for `channels`: t = int(|(log2(C) + beta) / gamma|), made odd.

    An even t becomes t + 1, so C = 16 gives 3, C = 256 gives 5 and C = 1 gives 1.
    """
    t = int(abs((math.log2(channels) + beta) / gamma))
    return t if t % 2 else t + 1


@keras.saving.register_keras_serializable(package="keras_recalib")
class EfficientChannelAttention(RecalibrationLayer):
    """Efficient Channel Attention (ECA): channel gates from a 1-D convolution across channels.

    Each channel is averaged over height and width; a 1-D convolution with one kernel of `k`
    weights (no bias, zero padding `(k - 1) // 2`) slides over the resulting vector of channel
    means, so each gate sees its `k` neighbouring channels; a sigmoid turns the result into the
    per-channel gate. The output is the input times that gate.

    Where the paper, the official code and copies differ:

    - Kernel size: the paper derives it from the channel count (Eq. 12, `gamma=2`, `beta=1`),
      which `kernel_size=None` (the default) does: t = int(|(log2(C) + beta) / gamma|), k = t
      if t is odd, else t + 1. The official `eca_layer` takes `k_size` (default 3) and its
      ImageNet models pass per-stage sizes (e.g. ResNet-50 "3557"), so pass `kernel_size` to
      reproduce a trained model. timm's `EcaModule` also raises the adaptive size to at least 3.
    - The convolution runs as a 2-D convolution over a `(batch, 1, channels, 1)` view of the
      channel means, which converts to a TFLite built-in.

    - A kernel longer than 2C - 1 would have taps that never reach a channel; such a size,
      given or adaptive, is refused when the layer is built.

    Args:
        kernel_size: optional odd int >= 1, the number of neighbouring channels each gate sees,
            at most 2C - 1; `None` chooses it from the channel count. Defaults to `None`.
        gamma: float > 0, the adaptive size's slope parameter; only with `kernel_size=None`
            (a `ValueError` otherwise, unless it keeps its default). Defaults to `2`.
        beta: float, the adaptive size's offset parameter; only with `kernel_size=None`, like
            `gamma`. Defaults to `1`.
        kernel_initializer: initializer of the `k` convolution weights (not `None`). Defaults
            to `"glorot_uniform"`.
        kernel_regularizer: optional regularizer of those weights. Defaults to `None`.

    Input shape:
        `(batch, height, width, channels)`. Integer inputs are cast to the compute dtype.

    Output shape:
        Same as the input, in the layer's compute dtype.

    Example:

    >>> x = keras.Input((None, None, 256))
    >>> y = keras_recalib.EfficientChannelAttention()(x)  # kernel size 5

    Reference:
        https://arxiv.org/abs/1910.03151
    """

    def __init__(
        self,
        kernel_size: int | None = None,
        gamma: float = 2.0,
        beta: float = 1.0,
        kernel_initializer: InitializerLike = "glorot_uniform",
        kernel_regularizer: RegularizerLike | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.kernel_size = v.check_int(
            "kernel_size", kernel_size, minimum=1, allow_none=True, odd=True
        )
        self.gamma = v.check_float("gamma", gamma, minimum=0.0, min_inclusive=False)
        self.beta = v.check_float("beta", beta)
        self.kernel_initializer = v.get_initializer("kernel_initializer", kernel_initializer)
        self.kernel_regularizer = v.get_regularizer("kernel_regularizer", kernel_regularizer)
        if self.kernel_size is not None:
            v.refuse_inactive(
                EfficientChannelAttention,
                "an explicit kernel_size (gamma and beta only shape the adaptive size)",
                gamma=gamma,
                beta=beta,
            )

    def build(self, input_shape):
        channels = self._check_input_shape(input_shape)
        self.resolved_kernel_size = self.kernel_size or adaptive_kernel_size(
            channels, self.gamma, self.beta
        )
        longest = 2 * channels - 1
        if self.resolved_kernel_size > longest:
            adaptive = ""
            if self.kernel_size is None:
                adaptive = (
                    f" (the adaptive size from gamma={self.gamma}, beta={self.beta} is "
                    f"{self.resolved_kernel_size})"
                )
            raise ValueError(
                f"Argument `kernel_size` must be at most 2 * channels - 1 = {longest} for "
                f"{channels} channels{adaptive}: a longer kernel has taps that never reach a "
                f"channel. Received: kernel_size={self.kernel_size}"
            )
        # Official layout: `conv.weight[0, 0, :]`, applied as a cross-correlation.
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.resolved_kernel_size,),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )

    def _gate(self, inputs):
        """The (batch, channels) gate in [0, 1], in the statistics dtype."""
        dtype = self._stats_dtype
        x = keras.ops.cast(self._prepare_input(inputs), dtype)
        pooled = ops.spatial_mean(x)
        return keras.ops.sigmoid(ops.channel_conv(pooled, keras.ops.cast(self.kernel, dtype)))

    def call(self, inputs):
        x = self._prepare_input(inputs)
        return ops.channel_scale(x, keras.ops.cast(self._gate(x), x.dtype))

    def gates(self, inputs, training: bool = False) -> dict:
        return {"channel": self._gate(inputs)[:, None, None, :]}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_size": self.kernel_size,
                "gamma": self.gamma,
                "beta": self.beta,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            }
        )
        return config

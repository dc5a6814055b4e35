"""SE: Squeeze-and-Excitation.

Hu, Shen, Albanie, Sun and Wu, "Squeeze-and-Excitation Networks", CVPR 2018 / TPAMI 2020
(https://arxiv.org/abs/1709.01507). Semantics and parameter names follow the PyTorch `SELayer`
of the SRM repository, hyunjaelee410/style-based-recalibration-module
(`models/recalibration_modules.py`), the SE baseline SRM is compared with.
"""

import keras

from keras_recalib import _validation as v
from keras_recalib import ops
from keras_recalib._validation import InitializerLike, RegularizerLike
from keras_recalib.layers._base import RecalibrationLayer
from keras_recalib.layers._blocks import ExcitationMLP


@keras.saving.register_keras_serializable(package="keras_recalib")
class SqueezeExcitation(ExcitationMLP, RecalibrationLayer):
    """Squeeze-and-Excitation (SE): channel gates from a bottleneck MLP on the channel means.

    Squeeze: the global average of each channel over height and width. Excitation: a fully
    connected layer down to `channels // reduction` units (with bias), ReLU, a fully connected
    layer back to `channels` (with bias) and a sigmoid. The output is the input times that
    per-channel gate.

    Where the paper, the reference code and copies differ:

    - Width: the paper and the SRM repository's `SELayer` use `channels // reduction`, which
      the official code leaves at 0 (a broken layer) when `channels < reduction`; here it is at
      least 1. timm's `SEModule` rounds the width to a multiple of 8 instead: pass
      `bottleneck_channels` to reproduce any other width.
    - timm implements the two layers as 1x1 convolutions (`fc1`, `fc2`); the computation is the
      same and `keras_recalib.convert` loads both layouts.

    Args:
        reduction: int, ratio of the input channels to the bottleneck width. Defaults to `16`
            (the paper's choice).
        bottleneck_channels: optional int, the bottleneck width; replaces `reduction`, which
            must then keep its default.
            Defaults to `None`.
        kernel_initializer: initializer of both weight matrices. Defaults to
            `"glorot_uniform"`. The biases start at zero.
        kernel_regularizer: optional regularizer of both weight matrices. Defaults to `None`.

    Input shape:
        `(batch, height, width, channels)`. Integer inputs are cast to the compute dtype.

    Output shape:
        Same as the input, in the layer's compute dtype.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = keras_recalib.SqueezeExcitation(reduction=16)(x)

    Reference:
        https://arxiv.org/abs/1709.01507
    """

    def __init__(
        self,
        reduction: int = 16,
        bottleneck_channels: int | None = None,
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
        self.kernel_initializer = v.get_initializer("kernel_initializer", kernel_initializer)
        self.kernel_regularizer = v.get_regularizer("kernel_regularizer", kernel_regularizer)

    def build(self, input_shape):
        channels = self._check_input_shape(input_shape)
        self._build_excitation(channels, self.bottleneck_channels)

    def _gate(self, inputs):
        """The (batch, channels) gate in [0, 1], in the statistics dtype."""
        x = keras.ops.cast(self._prepare_input(inputs), self._stats_dtype)
        return keras.ops.sigmoid(self._excite(ops.spatial_mean(x)))

    def call(self, inputs):
        x = self._prepare_input(inputs)
        return ops.channel_scale(x, keras.ops.cast(self._gate(x), x.dtype))

    def gates(self, inputs, training: bool = False) -> dict:
        return {"channel": self._gate(inputs)[:, None, None, :]}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "reduction": self.reduction,
                "bottleneck_channels": self.bottleneck_channels,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            }
        )
        return config

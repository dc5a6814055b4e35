"""Coordinate Attention.

Hou, Zhou and Feng, "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021
(https://arxiv.org/abs/2103.02907). Semantics follow the official code, houqb/CoordAttention
(`coordatt.py`, `CoordAtt`; `mbv2_ca.py` holds the same module under other names and the
weight initialisation of the official MobileNetV2 training).
"""

import keras

from keras_recalib import _validation as v
from keras_recalib._validation import InitializerLike, RegularizerLike
from keras_recalib.layers._base import RecalibrationLayer, reduced_width


def hard_swish(x):
    """x * relu6(x + 3) / 6, the official `h_swish`."""
    return x * keras.ops.relu6(x + 3.0) / 6.0


@keras.saving.register_keras_serializable(package="keras_recalib")
class CoordinateAttention(RecalibrationLayer):
    """Coordinate Attention (CA): gates along the height and along the width.

    The input is averaged along the width (one descriptor per row) and along the height (one
    per column); the two descriptor strips are concatenated along the spatial axis and share a
    1x1 convolution (with bias) down to `mip = max(min_channels, channels // reduction)`
    channels, batch normalisation and a hard-swish. The result is split back into the row and
    the column strip, and two 1x1 convolutions (with bias) followed by a sigmoid give a
    per-row gate `a_h` and a per-column gate `a_w` with as many channels as the input. The
    output is `x * a_h * a_w`.

    Where the sources differ:

    - The paper writes the activation as a generic non-linearity; the official code uses
      hard-swish, `x * relu6(x + 3) / 6`, as here.
    - The official module takes separate input and output widths (`inp`, `oup`) but its output
      `identity * a_w * a_h` only broadcasts when they are equal, so the output width here is
      always the input width.
    - `coordatt.py` names the gate convolutions `conv_h` and `conv_w`, `mbv2_ca.py` names them
      `conv2` and `conv3`; `keras_recalib.convert.load_torch_weights` reads both.
    - Initialisation: `coordatt.py` keeps PyTorch's default; the official MobileNetV2 training
      (`mbv2_ca.py`) draws the convolution kernels from normal(0, sqrt(2 / fan_out)) with zero
      biases, which is the default here.

    Args:
        reduction: int, the bottleneck width is `channels // reduction`. Defaults to `32`.
        min_channels: int, lower bound of the bottleneck width (the official `max(8, ...)`).
            Defaults to `8`.
        synchronized: bool, synchronise the batch statistics across replicas under
            `tf.distribute`. Defaults to `False`.
        momentum: float, moving-average momentum of the normalisation in Keras' convention
            (PyTorch's 0.1 is Keras' 0.9). Defaults to `0.9`.
        norm_epsilon: float, epsilon of the normalisation (PyTorch's default). Defaults to
            `1e-5`.
        kernel_initializer: initializer of the three 1x1 convolution kernels. Defaults to
            `None`, the official training's normal with std sqrt(2 / fan_out).
        kernel_regularizer: optional regularizer of those kernels. Defaults to `None`.

    Input shape:
        `(batch, height, width, channels)`. Integer inputs are cast to the compute dtype.

    Output shape:
        Same as the input, in the layer's compute dtype.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = keras_recalib.CoordinateAttention(reduction=32)(x)

    Reference:
        https://arxiv.org/abs/2103.02907
    """

    def __init__(
        self,
        reduction: int = 32,
        min_channels: int = 8,
        synchronized: bool = False,
        momentum: float = 0.9,
        norm_epsilon: float = 1e-5,
        kernel_initializer: InitializerLike | None = None,
        kernel_regularizer: RegularizerLike | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.reduction = v.check_int("reduction", reduction, minimum=1)
        self.min_channels = v.check_int("min_channels", min_channels, minimum=1)
        self._set_batch_norm_arguments(synchronized, momentum, norm_epsilon)
        # mbv2_ca.py `_initialize_weights`: normal(0, sqrt(2 / (kh * kw * out_channels))).
        self.kernel_initializer = v.initializer_or_fan_out("kernel_initializer", kernel_initializer)
        self.kernel_regularizer = v.get_regularizer("kernel_regularizer", kernel_regularizer)

    def _conv(self, filters, name):
        return keras.layers.Conv2D(
            filters,
            1,
            # A copy each, or conv_h and conv_w would start from the same draw.
            kernel_initializer=v.fresh_initializer(self.kernel_initializer),
            kernel_regularizer=self.kernel_regularizer,
            bias_initializer="zeros",
            # The gate branch only sees pooled strips, so float32 costs little under mixed
            # precision and keeps sums of large float16 activations from overflowing.
            dtype=self._stats_dtype,
            name=name,
        )

    def build(self, input_shape):
        channels = self._check_input_shape(input_shape)
        self.mip = reduced_width(channels, self.reduction, self.min_channels)
        self.conv1 = self._conv(self.mip, "conv1")
        self.conv1.build((None, None, 1, channels))
        self.bn1 = self._make_batch_norm("bn1", (None, None, 1, self.mip))
        self.conv_h = self._conv(channels, "conv_h")
        self.conv_h.build((None, None, 1, self.mip))
        self.conv_w = self._conv(channels, "conv_w")
        self.conv_w.build((None, 1, None, self.mip))

    def _gates(self, inputs, training=None):
        """The per-row gate (batch, height, 1, channels) and the per-column gate
        (batch, 1, width, channels), in the statistics dtype."""
        x = keras.ops.cast(self._prepare_input(inputs), self._stats_dtype)
        height = keras.ops.shape(x)[1]
        rows = keras.ops.mean(x, axis=2, keepdims=True)  # (B, H, 1, C)
        cols = keras.ops.mean(x, axis=1, keepdims=True)  # (B, 1, W, C)
        # Both strips laid along axis 1, as the official code concatenates along H.
        strips = keras.ops.concatenate([rows, keras.ops.transpose(cols, (0, 2, 1, 3))], axis=1)
        y = hard_swish(self.bn1(self.conv1(strips), training=training))
        y_h = y[:, :height]
        y_w = keras.ops.transpose(y[:, height:], (0, 2, 1, 3))  # (B, 1, W, mip)
        return keras.ops.sigmoid(self.conv_h(y_h)), keras.ops.sigmoid(self.conv_w(y_w))

    def call(self, inputs, training=None):
        x = self._prepare_input(inputs)
        a_h, a_w = self._gates(x, training=training)
        return x * keras.ops.cast(a_w, x.dtype) * keras.ops.cast(a_h, x.dtype)

    def gates(self, inputs, training: bool = False) -> dict:
        """`{"height": (batch, height, 1, channels), "width": (batch, 1, width, channels)}`."""
        a_h, a_w = self._gates(inputs, training=training)
        return {"height": a_h, "width": a_w}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "reduction": self.reduction,
                "min_channels": self.min_channels,
                **self._batch_norm_config(),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            }
        )
        return config

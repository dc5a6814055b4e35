"""SCConv: self-calibrated convolution.

Liu, Hou, Cheng, Wang and Feng, "Improving Convolutional Networks with Self-calibrated
Convolutions", CVPR 2020 (https://mftp.mmcheng.net/Papers/20cvprSCNet.pdf). Semantics follow the
seed's `SCConv` (split, k1 .. k4, concat) and the official code, MCG-NKU/SCNet (`scnet.py`,
`SCConv` and `SCBottleneck`) for the stride and the upsampling.
"""

import keras

from keras_recalib import _validation as v
from keras_recalib import ops
from keras_recalib._conventions import torch_padding
from keras_recalib._validation import InitializerLike, RegularizerLike
from keras_recalib.layers._base import RecalibrationLayer

_INTERPOLATIONS = ("nearest", "bilinear")


def _average_pool_floor(x, rate):
    """Average pooling with kernel = stride = `rate` over height and width, floor mode.

    The window shrinks to the map's size along an axis shorter than `rate` (PyTorch's
    AvgPool2d raises there, its output would be empty). With a dynamic spatial size the
    window is not known when tracing, so it is written as reshapes and means (rank <= 4, for
    TFLite).
    """
    batch, height, width, channels = (ops.axis_size(x, a) for a in range(4))
    if isinstance(height, int) and isinstance(width, int):
        window = (min(rate, height), min(rate, width))
        return keras.ops.average_pool(x, window, window, "valid")
    kh, kw = keras.ops.minimum(rate, height), keras.ops.minimum(rate, width)
    ph, pw = height // kh, width // kw
    x = x[:, : ph * kh, : pw * kw, :]
    x = keras.ops.mean(keras.ops.reshape(x, [batch, ph, kh, pw * kw * channels]), axis=2)
    x = keras.ops.mean(keras.ops.reshape(x, [batch * ph, pw, kw, channels]), axis=2)
    return keras.ops.reshape(x, [batch, ph, pw, channels])


@keras.saving.register_keras_serializable(package="keras_recalib")
class SelfCalibratedConv2D(RecalibrationLayer):
    """Self-calibrated 3x3 convolution (SCConv): a convolution whose half is self-calibrated.

    The input channels are split in halves (x1 = first half, x2 = second half, like torch's
    `chunk(2, dim=1)`). x2 takes a plain 3x3 convolution + BN (`k1`). x1 is calibrated: it is
    average-pooled by `pooling_r` (kernel = stride = `pooling_r`, floor mode), convolved + BN
    (`k2`), upsampled back to x1's size, and `sigmoid(x1 + up)` multiplies the 3x3 convolution
    + BN of x1 (`k3`); the product goes through a last 3x3 convolution + BN (`k4`). The output
    is `concat([k4 path, k1 path])` along channels. All convolutions are bias-free with
    PyTorch's symmetric padding of 1; `k1` and `k4` carry the stride (as in the official
    `SCBottleneck`), implemented as explicit zero padding + a valid convolution, so the output
    matches PyTorch also for even sizes with `strides=2` (Keras' `"same"` pads only after).

    Channels: with C input channels, `k2` and `k3` keep C/2 channels (they are added to and
    multiplied with x1), while `k1` and `k4` map C/2 to `filters`/2 each. C and `filters` must
    be even. With F = `filters`, the trainable parameters are 9C^2/2 (`k2`, `k3`) + 9CF/2
    (`k1`, `k4`) + 2(C + F) (the four BNs' scales and offsets); for F = C that is a plain
    bias-free 3x3 convolution C -> C (9C^2) plus 4C.

    Where the sources differ:

    - Upsampling: the seed's text says "linear interpolation", but its code, like the official
      code, calls `F.interpolate` with the default mode, 'nearest' (source index =
      floor(dst * in / out)); `interpolation="nearest"` (default) reproduces it exactly, also
      for sizes that are not multiples of `pooling_r` (14 -> 3 -> 14), where TF2's
      `tf.image.resize` picks different pixels. `"bilinear"` is PyTorch's bilinear mode with
      `align_corners=False`.
    - Order and activations: this layer is the seed's module: `concat([calibrated, plain])`,
      no activation. The official `SCBottleneck` feeds the halves from two separate 1x1
      convolutions, puts a ReLU after `k1` and `k4` (a ReLU after this layer is the same) and
      concatenates `[plain, calibrated]` (a permutation, absorbed by the following 1x1 conv).
    - Maps smaller than `pooling_r`: PyTorch fails (empty pooled map). Here the pooling window
      shrinks to the map's size along that axis, so a 1x1 or 2x3 map pools to 1x1; outputs
      equal PyTorch's whenever height and width are >= `pooling_r`.
    - Initialisation: `kernel_initializer=None` is the official `SCNet` init, Kaiming normal
      with fan_out (std sqrt(2 / (9 * out_channels))); BN scales start at 1, offsets at 0.

    Args:
        filters: int or None, output channels (even). Defaults to `None`: the input channels.
        pooling_r: int, down-sampling rate of the calibration branch's average pooling.
            Defaults to `4` (official `SCBottleneck.pooling_r`).
        strides: int, stride of `k1` and `k4`; the output size is ceil(size / strides).
            Defaults to `1`.
        interpolation: `"nearest"` or `"bilinear"`, the upsampling of the calibration branch,
            as PyTorch's `F.interpolate`. Defaults to `"nearest"`.
        synchronized: bool, synchronise the BN batch statistics across replicas under
            `tf.distribute`. Defaults to `False`.
        momentum: float, BN moving-average momentum in Keras' convention (PyTorch's 0.1 is
            Keras' 0.9). Defaults to `0.9`.
        norm_epsilon: float, BN epsilon (PyTorch's default). Defaults to `1e-5`.
        kernel_initializer: initializer of the four 3x3 kernels. Defaults to `None`, the
            official normal with std sqrt(2 / fan_out).
        kernel_regularizer: optional regularizer of those kernels. Defaults to `None`.

    Input shape:
        `(batch, height, width, channels)` with an even channel count. Integer inputs are
        cast to the compute dtype.

    Output shape:
        `(batch, ceil(height / strides), ceil(width / strides), filters)`, in the layer's
        compute dtype.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = keras_recalib.SelfCalibratedConv2D()(x)

    Reference:
        https://openaccess.thecvf.com/content_CVPR_2020/html/Liu_Improving_Convolutional_Networks_With_Self-Calibrated_Convolutions_CVPR_2020_paper.html
    """

    is_gate = False

    def __init__(
        self,
        filters: int | None = None,
        pooling_r: int = 4,
        strides: int = 1,
        interpolation: str = "nearest",
        synchronized: bool = False,
        momentum: float = 0.9,
        norm_epsilon: float = 1e-5,
        kernel_initializer: InitializerLike | None = None,
        kernel_regularizer: RegularizerLike | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.filters = v.check_int("filters", filters, minimum=2, allow_none=True)
        if self.filters is not None and self.filters % 2:
            raise ValueError(
                "Argument `filters` must be an even integer (the output is two halves of "
                f"filters / 2 channels) or None. Received: filters={filters!r}"
            )
        self.pooling_r = v.check_int("pooling_r", pooling_r, minimum=1)
        self.strides = v.check_int("strides", strides, minimum=1)
        self.interpolation = v.check_choice("interpolation", interpolation, _INTERPOLATIONS)
        self._set_batch_norm_arguments(synchronized, momentum, norm_epsilon)
        # scnet.py: kaiming_normal_(mode="fan_out", nonlinearity="relu") on every conv.
        self.kernel_initializer = v.initializer_or_fan_out("kernel_initializer", kernel_initializer)
        self.kernel_regularizer = v.get_regularizer("kernel_regularizer", kernel_regularizer)

    def _output_channels(self, channels):
        return channels if self.filters is None else self.filters

    def _conv(self, name, filters, strides, in_channels):
        # Strided convs get PyTorch's symmetric padding explicitly (see `_conv_bn`).
        _, padding = torch_padding(3, strides)
        conv = keras.layers.Conv2D(
            filters,
            3,
            strides=strides,
            padding=padding,
            use_bias=False,
            kernel_initializer=v.fresh_initializer(self.kernel_initializer),
            kernel_regularizer=self.kernel_regularizer,
            dtype=self.dtype_policy,
            name=name,
        )
        conv.build((None, None, None, in_channels))
        return conv

    def build(self, input_shape):
        channels = self._check_input_shape(input_shape)
        if channels % 2:
            raise ValueError(
                f"{type(self).__name__} splits the channels into two halves, so it needs an "
                f"even channel count. Received: input_shape={tuple(input_shape)}"
            )
        half = channels // 2
        out_half = self._output_channels(channels) // 2
        self.k1_conv = self._conv("k1_conv", out_half, self.strides, half)
        self.k1_bn = self._make_batch_norm("k1_bn", (None, None, None, out_half))
        self.k2_conv = self._conv("k2_conv", half, 1, half)
        self.k2_bn = self._make_batch_norm("k2_bn", (None, None, None, half))
        self.k3_conv = self._conv("k3_conv", half, 1, half)
        self.k3_bn = self._make_batch_norm("k3_bn", (None, None, None, half))
        self.k4_conv = self._conv("k4_conv", out_half, self.strides, half)
        self.k4_bn = self._make_batch_norm("k4_bn", (None, None, None, out_half))

    def _conv_bn(self, conv, bn, x, training):
        pad, _ = torch_padding(conv.kernel_size[0], conv.strides[0])
        y = conv(ops.pad_spatial(x, pad))
        # BN statistics in float32 under mixed precision.
        return bn(keras.ops.cast(y, self._stats_dtype), training=training)

    def call(self, inputs, training=None):
        x = self._prepare_input(inputs)
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        stats = self._stats_dtype

        pooled = _average_pool_floor(keras.ops.cast(x1, stats), self.pooling_r)
        down = self._conv_bn(self.k2_conv, self.k2_bn, keras.ops.cast(pooled, x.dtype), training)
        up = ops.resize(down, ops.axis_size(x1, 1), ops.axis_size(x1, 2), self.interpolation)
        calibration = keras.ops.sigmoid(keras.ops.cast(x1, stats) + up)
        calibrated = self._conv_bn(self.k3_conv, self.k3_bn, x1, training) * calibration
        out = self._conv_bn(self.k4_conv, self.k4_bn, keras.ops.cast(calibrated, x.dtype), training)
        plain = self._conv_bn(self.k1_conv, self.k1_bn, x2, training)
        return keras.ops.concatenate(
            [keras.ops.cast(out, x.dtype), keras.ops.cast(plain, x.dtype)], axis=-1
        )

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = tuple(input_shape)

        def reduce(size):
            return None if size is None else -(-int(size) // self.strides)

        return (batch, reduce(height), reduce(width), self._output_channels(int(channels)))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "pooling_r": self.pooling_r,
                "strides": self.strides,
                "interpolation": self.interpolation,
                **self._batch_norm_config(),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            }
        )
        return config

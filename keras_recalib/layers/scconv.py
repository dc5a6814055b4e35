"""SCConv: self-calibrated convolution.

Liu, Hou, Cheng, Wang and Feng, "Improving Convolutional Networks with Self-calibrated
Convolutions", CVPR 2020 (https://mftp.mmcheng.net/Papers/20cvprSCNet.pdf). Semantics follow the
seed's `SCConv` (split, k1 .. k4, concat) and the official code, MCG-NKU/SCNet (`scnet.py`,
`SCConv` and `SCBottleneck`) for the stride and the upsampling.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_recalib import _validation as v
from keras_recalib.layers._base import RecalibrationLayer

_INTERPOLATIONS = ("nearest", "bilinear")


def _size(x, axis):
    """A static axis length as a Python int, else the dynamic one."""
    static = x.shape[axis]
    return int(static) if static is not None else tf.shape(x)[axis]


def _average_pool_floor(x, rate):
    """Average pooling with kernel = stride = `rate` over height and width, floor mode.

    The window shrinks to the map's size along an axis shorter than `rate` (PyTorch's
    AvgPool2d raises there, its output would be empty). With a dynamic spatial size the
    window is not known when tracing, so it is written as reshapes and means (rank <= 4, for
    TFLite).
    """
    batch, height, width, channels = (_size(x, a) for a in range(4))
    if isinstance(height, int) and isinstance(width, int):
        window = (min(rate, height), min(rate, width))
        return tf.nn.avg_pool2d(x, window, window, "VALID")
    kh, kw = tf.minimum(rate, height), tf.minimum(rate, width)
    ph, pw = height // kh, width // kw
    x = x[:, : ph * kh, : pw * kw, :]
    x = tf.reduce_mean(tf.reshape(x, [batch, ph, kh, pw * kw * channels]), axis=2)
    x = tf.reduce_mean(tf.reshape(x, [batch * ph, pw, kw, channels]), axis=2)
    return tf.reshape(x, [batch, ph, pw, channels])


def _source_coordinates(in_size, out_size, interpolation):
    """Where PyTorch's F.interpolate samples output index `dst`, in float32 like its kernels.

    'nearest' (the default mode): dst * in / out; 'bilinear' with align_corners=False:
    max((dst + 0.5) * in / out - 0.5, 0). Static sizes give NumPy constants (same float32
    arithmetic), dynamic ones tensors.
    """
    if isinstance(in_size, int) and isinstance(out_size, int):
        dst = np.arange(out_size, dtype=np.float32)
        scale = np.float32(in_size) / np.float32(out_size)
        if interpolation == "nearest":
            return dst * scale
        return np.maximum((dst + np.float32(0.5)) * scale - np.float32(0.5), np.float32(0))
    dst = tf.cast(tf.range(out_size), tf.float32)
    scale = tf.cast(in_size, tf.float32) / tf.cast(out_size, tf.float32)
    if interpolation == "nearest":
        return dst * scale
    return tf.maximum((dst + 0.5) * scale - 0.5, 0.0)


def _nearest_indices(in_size, out_size):
    # PyTorch: min(floor(dst * in / out), in - 1). TF2's tf.image.resize 'nearest' samples at
    # (dst + 0.5) * in / out and picks other pixels when out is not a multiple of in.
    source = _source_coordinates(in_size, out_size, "nearest")
    if isinstance(source, np.ndarray):
        return np.minimum(np.floor(source).astype(np.int32), in_size - 1)
    return tf.minimum(tf.cast(tf.floor(source), tf.int32), in_size - 1)


def _linear_indices(in_size, out_size):
    """PyTorch's bilinear taps along one axis: lower and upper index, weight of the upper."""
    source = _source_coordinates(in_size, out_size, "bilinear")
    if isinstance(source, np.ndarray):
        lower = np.minimum(np.floor(source).astype(np.int32), in_size - 1)
        weight = np.clip(source - lower.astype(np.float32), 0.0, 1.0)
        return lower, np.minimum(lower + 1, in_size - 1), weight
    lower = tf.minimum(tf.cast(tf.floor(source), tf.int32), in_size - 1)
    weight = tf.clip_by_value(source - tf.cast(lower, tf.float32), 0.0, 1.0)
    return lower, tf.minimum(lower + 1, in_size - 1), weight


def _resize_axis(x, out_size, axis, interpolation):
    """Resizes NHWC `x` along `axis` (1 or 2) to `out_size` like PyTorch's F.interpolate."""
    in_size = _size(x, axis)
    if interpolation == "nearest":
        return tf.gather(x, _nearest_indices(in_size, out_size), axis=axis)
    lower, upper, weight = _linear_indices(in_size, out_size)
    weight = tf.reshape(tf.cast(weight, x.dtype), [-1, 1, 1] if axis == 1 else [-1, 1])
    low = tf.gather(x, lower, axis=axis)
    return low + (tf.gather(x, upper, axis=axis) - low) * weight


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
    be even. The parameters are those of a plain bias-free 3x3 convolution C -> C (9C^2 in
    four (C/2 x C/2) kernels) plus four BNs (4C); with F = `filters`, 9C^2/2 + 9CF/2 + C + F.

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
        filters=None,
        pooling_r=4,
        strides=1,
        interpolation="nearest",
        synchronized=False,
        momentum=0.9,
        norm_epsilon=1e-5,
        kernel_initializer=None,
        kernel_regularizer=None,
        **kwargs,
    ):
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
        self.synchronized = v.check_bool("synchronized", synchronized)
        self.momentum = v.check_float("momentum", momentum, minimum=0.0, maximum=1.0)
        self.norm_epsilon = v.check_float(
            "norm_epsilon", norm_epsilon, minimum=0.0, min_inclusive=False
        )
        if kernel_initializer is None:
            # scnet.py: kaiming_normal_(mode="fan_out", nonlinearity="relu") on every conv.
            kernel_initializer = keras.initializers.VarianceScaling(
                scale=2.0, mode="fan_out", distribution="untruncated_normal"
            )
        self.kernel_initializer = v.get_initializer("kernel_initializer", kernel_initializer)
        self.kernel_regularizer = v.get_regularizer("kernel_regularizer", kernel_regularizer)

    def _output_channels(self, channels):
        return channels if self.filters is None else self.filters

    def _conv(self, name, filters, strides, in_channels):
        conv = keras.layers.Conv2D(
            filters,
            3,
            strides=strides,
            # Strided convs get PyTorch's symmetric padding explicitly (see `_pad`).
            padding="same" if strides == 1 else "valid",
            use_bias=False,
            kernel_initializer=v.fresh_initializer(self.kernel_initializer),
            kernel_regularizer=self.kernel_regularizer,
            dtype=self.dtype_policy,
            name=name,
        )
        conv.build((None, None, None, in_channels))
        return conv

    def _bn(self, name, channels):
        bn = keras.layers.BatchNormalization(
            axis=-1,
            momentum=self.momentum,
            epsilon=self.norm_epsilon,
            synchronized=self.synchronized,
            dtype=self._stats_dtype,
            name=name,
        )
        bn.build((None, None, None, channels))
        return bn

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
        self.k1_bn = self._bn("k1_bn", out_half)
        self.k2_conv = self._conv("k2_conv", half, 1, half)
        self.k2_bn = self._bn("k2_bn", half)
        self.k3_conv = self._conv("k3_conv", half, 1, half)
        self.k3_bn = self._bn("k3_bn", half)
        self.k4_conv = self._conv("k4_conv", out_half, self.strides, half)
        self.k4_bn = self._bn("k4_bn", out_half)

    def _pad(self, x):
        if self.strides == 1:
            return x
        return tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])

    def _conv_bn(self, conv, bn, x, training):
        y = conv(self._pad(x) if conv.strides[0] > 1 else x)
        # BN statistics in float32 under mixed precision.
        return bn(tf.cast(y, self._stats_dtype), training=training)

    def _upsample(self, x, height, width):
        x = _resize_axis(x, height, 1, self.interpolation)
        return _resize_axis(x, width, 2, self.interpolation)

    def call(self, inputs, training=None):
        x = self._prepare_input(inputs)
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        stats = self._stats_dtype

        pooled = _average_pool_floor(tf.cast(x1, stats), self.pooling_r)
        down = self._conv_bn(self.k2_conv, self.k2_bn, tf.cast(pooled, x.dtype), training)
        up = self._upsample(down, _size(x1, 1), _size(x1, 2))
        calibration = tf.sigmoid(tf.cast(x1, stats) + up)
        calibrated = self._conv_bn(self.k3_conv, self.k3_bn, x1, training) * calibration
        out = self._conv_bn(self.k4_conv, self.k4_bn, tf.cast(calibrated, x.dtype), training)
        plain = self._conv_bn(self.k1_conv, self.k1_bn, x2, training)
        return tf.concat([tf.cast(out, x.dtype), tf.cast(plain, x.dtype)], axis=-1)

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
                "synchronized": self.synchronized,
                "momentum": self.momentum,
                "norm_epsilon": self.norm_epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            }
        )
        return config

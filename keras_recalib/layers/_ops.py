"""Building blocks shared by several layers (and the ResNets).

PyTorch-exact resampling (`F.interpolate`) and convolution padding, the official trainings'
fan-out initialisation, folding an inference BatchNormalization into a per-channel affine, the
Z-pool and its two-map convolution (CBAM's spatial gate, Triplet Attention's branches), the
bottleneck MLP of SE, CBAM and Gather-Excite, and the check that refuses an argument another
argument switches off.
"""

import inspect

import keras
import numpy as np
import tensorflow as tf

from keras_recalib import _validation as v
from keras_recalib.layers._base import reduced_width
from keras_recalib.layers._stats import in_xla_context, xla_barrier

# --- arguments -----------------------------------------------------------------------------------


def _canonical(name, value):
    # Initializers and regularizers compare by their serialized config, so "zeros", Zeros() and
    # the dict `get_config` wrote count as the same value.
    if name.endswith("_initializer"):
        return keras.initializers.serialize(keras.initializers.get(value))
    if name.endswith("_regularizer"):
        return keras.regularizers.serialize(keras.regularizers.get(value))
    return value


def refuse_inactive(cls, condition, **arguments):
    """`_validation.refuse_inactive` for arguments of `cls.__init__`, with the defaults read
    from its signature and initializers or regularizers compared by their config.

    Call after each value has passed its own check. `get_config` then holds the defaults, so
    `from_config(get_config())` still works.
    """
    parameters = inspect.signature(cls.__init__).parameters
    checked = {}
    for name, value in arguments.items():
        default = parameters[name].default
        same = _canonical(name, value) == _canonical(name, default)
        checked[name] = (default if same else value, default)
    v.refuse_inactive(condition, checked)


# --- initialisation ------------------------------------------------------------------------------


def fan_out_normal():
    """normal(0, sqrt(2 / fan_out)), PyTorch's `kaiming_normal_(mode="fan_out",
    nonlinearity="relu")`: the convolution init of torchvision's ResNet and of the official
    SCNet, Coordinate Attention (`mbv2_ca.py`) and Triplet Attention (`MODELS/resnet.py`)
    trainings."""
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal"
    )


def initializer_or_fan_out(name, value):
    """Argument `name` as a Keras initializer, `None` meaning `fan_out_normal()`."""
    if value is None:
        return fan_out_normal()
    return v.get_initializer(name, value)


# --- padding -------------------------------------------------------------------------------------


def torch_padding(kernel_size, strides):
    """How to reproduce PyTorch's symmetric `padding=kernel_size // 2` (odd kernel):
    `(explicit zero padding per side, Keras padding)`.

    Keras' "same" pads a strided convolution asymmetrically (nothing before, the rest after),
    so those get explicit padding and "valid"; at stride 1 "same" is already symmetric.
    """
    if strides > 1 and kernel_size > 1:
        return kernel_size // 2, "valid"
    return 0, "same"


def pad_spatial(x, pad):
    """Zero-pads an NHWC tensor by `pad` on each side of height and width."""
    if not pad:
        return x
    return tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])


# --- resampling ----------------------------------------------------------------------------------


def axis_size(x, axis):
    """A static axis length as a Python int, else the dynamic one."""
    static = x.shape[axis]
    return int(static) if static is not None else tf.shape(x)[axis]


def source_coordinates(in_size, out_size, interpolation):
    """Where PyTorch's `F.interpolate` samples output index `dst`, in float32 like its kernels.

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


def _lower_index(source, in_size):
    if isinstance(source, np.ndarray):
        return np.minimum(np.floor(source).astype(np.int32), in_size - 1)
    return tf.minimum(tf.cast(tf.floor(source), tf.int32), in_size - 1)


def nearest_indices(in_size, out_size):
    """PyTorch's nearest source indices, min(floor(dst * in / out), in - 1).

    TF2's `tf.image.resize` 'nearest' samples at (dst + 0.5) * in / out instead and picks other
    pixels when `out` is not a multiple of `in` (14 -> 3 -> 14).
    """
    return _lower_index(source_coordinates(in_size, out_size, "nearest"), in_size)


def linear_taps(in_size, out_size):
    """PyTorch's bilinear taps along one axis: lower index, upper index, weight of the upper."""
    source = source_coordinates(in_size, out_size, "bilinear")
    lower = _lower_index(source, in_size)
    if isinstance(source, np.ndarray):
        weight = np.clip(source - lower.astype(np.float32), 0.0, 1.0)
        return lower, np.minimum(lower + 1, in_size - 1), weight
    weight = tf.clip_by_value(source - tf.cast(lower, tf.float32), 0.0, 1.0)
    return lower, tf.minimum(lower + 1, in_size - 1), weight


def resize_axis(x, out_size, axis, interpolation="nearest"):
    """Resizes NHWC `x` along `axis` (1 or 2) to `out_size` like PyTorch's `F.interpolate`.

    Built from gathers, which (unlike ResizeNearestNeighbor's gradient) compile under XLA and
    convert to TFLite built-in ops.
    """
    in_size = axis_size(x, axis)
    if interpolation == "nearest":
        return tf.gather(x, nearest_indices(in_size, out_size), axis=axis)
    lower, upper, weight = linear_taps(in_size, out_size)
    weight = tf.reshape(tf.cast(weight, x.dtype), [-1, 1, 1] if axis == 1 else [-1, 1])
    low = tf.gather(x, lower, axis=axis)
    return low + (tf.gather(x, upper, axis=axis) - low) * weight


def resize(x, height, width, interpolation="nearest"):
    """Resizes NHWC `x` to (height, width) like PyTorch's `F.interpolate` (default: nearest)."""
    x = resize_axis(x, height, 1, interpolation)
    return resize_axis(x, width, 2, interpolation)


# --- batch normalisation -------------------------------------------------------------------------


def fold_batch_norm(bn, dtype):
    """An inference-mode BatchNormalization as a per-channel affine: `(scale, shift)` with
    `bn(z, training=False) == z * scale + shift`, in `dtype`.

    scale = gamma / sqrt(moving_variance + epsilon), shift = beta - moving_mean * scale; a BN
    without scale (`scale=False`) or offset (`center=False`) leaves gamma = 1 or beta = 0.
    """
    scale = tf.math.rsqrt(tf.cast(bn.moving_variance, dtype) + bn.epsilon)
    if bn.scale:
        scale = scale * tf.cast(bn.gamma, dtype)
    mean = tf.cast(bn.moving_mean, dtype) * scale
    shift = tf.cast(bn.beta, dtype) - mean if bn.center else -mean
    return scale, shift


# --- Z-pool gates --------------------------------------------------------------------------------


def z_pool(x, axis):
    """The max and the mean over `axis` (kept, size 1), as two maps: the official Z-pool order
    (max first) of CBAM's spatial gate and Triplet Attention."""
    maximum = xla_barrier(tf.reduce_max(x, axis=axis, keepdims=True))
    return maximum, xla_barrier(tf.reduce_mean(x, axis=axis, keepdims=True))


def zpool_conv(maximum, mean, kernel):
    """The official k x k convolution (no bias) of the stacked [max; mean] maps, as two
    single-map convolutions summed; `kernel` is (k, k, 2, 1), input channel 0 for the max.

    Concatenated, the two maps would share one int8 scale in quantized TFLite, where the mean,
    much narrower than the max, would lose its precision. "SAME" with an odd kernel pads
    (k - 1) // 2 zeros on each side, as the official code.
    """
    return _plane_conv(maximum, kernel[:, :, 0, 0]) + _plane_conv(mean, kernel[:, :, 1, 0])


# Largest short side of a map convolved as a banded matrix (see `_plane_conv`).
_BANDED_MAX = 16
_BANDED_MAX_XLA = 64


def _plane_conv(plane, taps):
    """The "SAME" convolution of a one-channel (batch, h, w, 1) map with `taps` (k, k).

    A one-channel convolution is a poor fit for both of TensorFlow's CPU paths, so with a
    known map size it is written differently (the same sum in another order):

    - under XLA: the sum of k^2 shifted copies of the padded map, one fused loop
      (`_shifted_taps`). XLA's CPU backend runs a one-channel convolution through a generic
      loop, 10-20x slower.
    - elsewhere, for a map whose short side is at most 16: a convolution along the long side,
      with the short side as channels and a banded (k, 1, short, short) kernel
      (`_banded_conv`). oneDNN takes about 5x longer for the one-channel convolution of a thin
      2048 x 7 plane (Triplet's channel planes).
    - otherwise, and when the size is unknown: the plain convolution.
    """
    height, width = plane.shape[1], plane.shape[2]
    if height is not None and width is not None:
        if in_xla_context():
            return _shifted_taps(plane, taps)
        if min(height, width) <= _BANDED_MAX:
            return _banded_conv(plane, taps)
    return tf.nn.conv2d(plane, taps[:, :, None, None], 1, "SAME")


def channel_conv(values, taps):
    """The "SAME" 1-D cross-correlation of (batch, channels) `values` with odd-length `taps`
    along the channels: (k - 1) // 2 zeros on each side, as ECA's official `Conv1d`.

    Under XLA it is the sum of k shifted, scaled copies (`_shifted_channels`): XLA's CPU backend
    runs a one-channel convolution through a generic loop, slower there than in graph mode.
    Elsewhere the convolution (CONV_2D in TFLite).
    """
    channels = values.shape[-1]
    k = int(taps.shape[0])
    if in_xla_context():
        return _shifted_channels(values, taps)
    mixed = tf.nn.conv2d(
        tf.reshape(values, [-1, 1, channels, 1]), tf.reshape(taps, [1, k, 1, 1]), 1, "SAME"
    )
    return tf.reshape(mixed, [-1, channels])


def _shifted_sum_1d(values, taps):
    channels, k = values.shape[-1], int(taps.shape[0])
    half = (k - 1) // 2
    padded = tf.pad(values, [[0, 0], [half, half]])
    total = None
    for j in range(k):
        term = padded[:, j : j + channels] * taps[j]
        total = term if total is None else total + term
    return padded, total


@tf.custom_gradient
def _shifted_channels(values, taps):
    """`channel_conv` as k shifted copies, with the analytic gradient (XLA's own, through the
    slices, is several times slower than the forward pass)."""
    padded, total = _shifted_sum_1d(values, taps)

    def grad(upstream):
        _, d_values = _shifted_sum_1d(upstream, tf.reverse(taps, [0]))
        channels = values.shape[-1]
        d_taps = tf.stack(
            [tf.reduce_sum(padded[:, j : j + channels] * upstream) for j in range(taps.shape[0])]
        )
        return d_values, d_taps

    return total, grad


def _band(k, size, rows):
    """band[j, a, b] = 1 where a = b + j - (k - 1) // 2 + offset, a < rows: tap column j links
    column a of the (zero-padded, if rows > size) map to output column b."""
    offset = (rows - size) // 2
    band = np.zeros((k, rows, size), np.float32)
    for j in range(k):
        for b in range(size):
            a = b + j - (k - 1) // 2 + offset
            if 0 <= a < rows:
                band[j, a, b] = 1.0
    return band


def _banded_conv(plane, taps):
    """`_plane_conv` as a convolution along the long side with the short side as channels."""
    transpose = plane.shape[2] > plane.shape[1]
    if transpose:  # make the long side the first
        plane, taps = tf.transpose(plane, (0, 2, 1, 3)), tf.transpose(taps)
    length, short = int(plane.shape[1]), int(plane.shape[2])
    k = int(taps.shape[0])
    band = tf.constant(_band(k, short, short).reshape(k, short * short), taps.dtype)
    kernel = tf.reshape(tf.matmul(taps, band), [k, 1, short, short])
    out = tf.nn.conv2d(tf.reshape(plane, [-1, length, 1, short]), kernel, 1, "SAME")
    out = tf.reshape(out, [-1, length, short, 1])
    return tf.transpose(out, (0, 2, 1, 3)) if transpose else out


def _shifted_sum(plane, taps):
    # On (batch, h, w): with the trailing size-1 axis, XLA's loops would not vectorise.
    k = int(taps.shape[0])
    height, width = int(plane.shape[1]), int(plane.shape[2])
    half = (k - 1) // 2
    padded = tf.pad(plane[..., 0], [[0, 0], [half, half], [half, half]])
    total = None
    for i in range(k):
        for j in range(k):
            term = padded[:, i : i + height, j : j + width] * taps[i, j]
            total = term if total is None else total + term
    return total[..., None]


@tf.custom_gradient
def _shifted_taps(plane, taps):
    """`_plane_conv` as the sum of k^2 shifted, scaled copies of the zero-padded map.

    Its gradients: for a map whose short side is at most 64, those of `_banded_conv` (XLA's
    convolution gradients with `short` channels beat the k^2-term sums here, whose forward
    pass is the faster one); for a larger map, the same sum with the kernel flipped for the
    map, and for the taps, k^2 sums over the map of products, one matrix product: the k
    row-shifted copies of the padded map side by side, times the upstream gradient, whose
    diagonals are the taps' gradients.
    """

    def grad(dy):
        if min(plane.shape[1], plane.shape[2]) <= _BANDED_MAX_XLA:
            with tf.GradientTape() as tape:
                tape.watch([plane, taps])
                out = _banded_conv(plane, taps)
            return tape.gradient(out, [plane, taps], output_gradients=dy)
        d_plane = _shifted_sum(dy, tf.reverse(taps, [0, 1]))
        p, d = plane, dy
        if p.shape[2] > p.shape[1]:  # contract over the long side
            p, d = tf.transpose(p, (0, 2, 1, 3)), tf.transpose(d, (0, 2, 1, 3))
        k = int(taps.shape[0])
        half = (k - 1) // 2
        length, short = int(p.shape[1]), int(p.shape[2])
        padded = tf.pad(p[..., 0], [[0, 0], [half, half], [half, half]])
        rows = tf.concat([padded[:, i : i + length] for i in range(k)], axis=-1)
        rows = tf.reshape(rows, [-1, k * (short + 2 * half)])
        products = tf.matmul(rows, tf.reshape(d, [-1, short]), transpose_a=True)
        products = tf.reshape(products, [k, 1, (short + 2 * half) * short])
        band = tf.constant(_band(k, short, short + 2 * half).reshape(k, -1), dy.dtype)
        d_taps = tf.reduce_sum(products * band, axis=-1)  # (k rows, k columns)
        if plane.shape[2] > plane.shape[1]:
            d_taps = tf.transpose(d_taps)
        return d_plane, d_taps

    return xla_barrier(_shifted_sum(plane, taps)), grad


def zpool_gate(maximum, mean, kernel, bn, training):
    """sigmoid(BN(zpool_conv(...))), in the maps' dtype; at inference (`training=False`) the
    normalisation is folded into the kernel and one bias."""
    if training:
        return tf.sigmoid(bn(zpool_conv(maximum, mean, kernel), training=True))
    scale, shift = fold_batch_norm(bn, maximum.dtype)
    return tf.sigmoid(zpool_conv(maximum, mean, kernel * scale) + shift)


# --- bottleneck MLP ------------------------------------------------------------------------------


def _dense(z, kernel, bias):
    kernel = tf.cast(kernel, z.dtype)
    if z.shape.rank == 2:
        y = tf.matmul(z, kernel)
    else:
        # (batch, h, w, channels) maps: the same weights as a 1x1 convolution.
        y = tf.nn.conv2d(z, kernel[None, None], 1, "VALID")
    return y + tf.cast(bias, z.dtype)


class ExcitationMLP:
    """The bottleneck MLP of SE, CBAM's channel gate and Gather-Excite's excite step: fully
    connected C -> width (with bias), ReLU, fully connected width -> C (with bias).

    A mixin for a layer with `reduction`, `kernel_initializer` and `kernel_regularizer`
    attributes. The weights are plain variables `fc1_kernel` (C, width), `fc1_bias`,
    `fc2_kernel` (width, C), `fc2_bias` rather than `Dense` sublayers: the MLP mostly runs on a
    `(batch, channels)` vector, where a sublayer call costs more than its matmul.
    """

    def _build_excitation(self, channels, bottleneck_channels=None):
        width = bottleneck_channels or reduced_width(channels, self.reduction)
        for name, shape in (("fc1", (channels, width)), ("fc2", (width, channels))):
            kernel = self.add_weight(
                name=f"{name}_kernel",
                shape=shape,
                initializer=v.fresh_initializer(self.kernel_initializer),
                regularizer=self.kernel_regularizer,
            )
            bias = self.add_weight(name=f"{name}_bias", shape=shape[1:], initializer="zeros")
            setattr(self, f"{name}_kernel", kernel)
            setattr(self, f"{name}_bias", bias)

    def _excite(self, features):
        """Maps `(n, channels)` vectors or `(n, h, w, channels)` maps to gate logits of the
        same shape."""
        hidden = tf.nn.relu(_dense(features, self.fc1_kernel, self.fc1_bias))
        return _dense(hidden, self.fc2_kernel, self.fc2_bias)

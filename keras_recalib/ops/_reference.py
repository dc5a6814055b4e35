"""The primitives' reference implementations: their semantics, in `keras.ops`.

Each function is the straightforward formulation (two-pass moments as `tf.nn.moments` computes
them, reductions, a broadcast product, a convolution) with the backend's own gradients. It is
the implementation on JAX and PyTorch, and on TensorFlow wherever `_tensorflow` has no faster
formulation (which must compute the same numbers); `keras_recalib.ops` chooses between the two.
"""

import ml_dtypes
import numpy as np
from keras import backend, ops

# --- counts and roots ------------------------------------------------------------------------


def dtype_of(x):
    """The dtype of a tensor of any backend, by name ("float32", ...)."""
    return backend.standardize_dtype(x.dtype)


def spatial_count(x, axes=(1, 2)):
    """Number of elements reduced over `axes`, as a Python int when static."""
    shape = ops.shape(x)
    if all(isinstance(shape[a], int) for a in axes):
        count = 1
        for a in axes:
            count *= int(shape[a])
        return count
    count = shape[axes[0]]
    for a in axes[1:]:
        count = count * shape[a]
    return count


def bessel_factor(count, dtype):
    """n / (n - 1), with n = 1 mapped to 1 so that the unbiased variance of one value is 0.

    PyTorch's `std(unbiased=True)` returns NaN for a single element (0/0); the layers define it
    as 0 instead so a 1x1 feature map keeps a finite output.
    """
    if isinstance(count, int):
        return ops.convert_to_tensor(count / max(count - 1, 1), dtype)
    n = ops.cast(count, dtype)
    return n / ops.maximum(n - 1.0, 1.0)


def safe_sqrt(value):
    """sqrt(value) for value >= 0 whose gradient at 0 is 0 instead of inf (then NaN)."""
    positive = value > 0
    # Scalar branches broadcast: `zeros_like` would stay a float op in int8 TFLite graphs.
    one = ops.convert_to_tensor(1.0, dtype_of(value))
    root = ops.sqrt(ops.where(positive, value, one))
    return ops.where(positive, root, ops.convert_to_tensor(0.0, dtype_of(value)))


def sqrt_plus_epsilon(var, epsilon):
    """sqrt(var + epsilon) for var >= 0 and a Python float epsilon >= 0, finite in value and
    gradient also where var + epsilon is 0.

    The zero-safe root unless the epsilon survives in the dtype (1e-50 is 0 in float32): then
    var + eps > 0 and a plain root is the same number with three fewer ops (and no SELECT,
    which XNNPACK does not delegate, in TFLite). A denormal epsilon may be flushed to zero, so
    it must be a normal number to count.
    """
    eps = ops.convert_to_tensor(epsilon, dtype_of(var))
    positive = epsilon >= ml_dtypes.finfo(dtype_of(var)).tiny
    return ops.sqrt(var + eps) if positive else safe_sqrt(var + eps)


# --- spatial statistics ----------------------------------------------------------------------


def _moments(x, axes, keepdims):
    # tf.nn.moments' two passes: the mean, then the mean squared deviation from it, with the
    # mean held constant (the variance's derivative through the mean is zero anyway).
    # `keras.ops.moments` computes E[x^2] - E[x]^2 instead, which cancels catastrophically
    # when the mean is large against the std.
    mean = ops.mean(x, axis=axes, keepdims=True)
    deviation = x - ops.stop_gradient(mean)
    var = ops.mean(deviation * deviation, axis=axes, keepdims=keepdims)
    return (mean if keepdims else ops.squeeze(mean, axes)), var


def spatial_moments(x):
    return _moments(x, (1, 2), keepdims=False)


def spatial_sum(x):
    return ops.sum(x, axis=(1, 2))


def spatial_mean(x):
    return ops.mean(x, axis=(1, 2))


def axis_moments(x, axis):
    return _moments(x, (axis,), keepdims=True)


# --- gating products -------------------------------------------------------------------------


def channel_scale(x, gate):
    return x * ops.reshape(gate, (-1, 1, 1, gate.shape[-1]))


def gate_product(x, gate):
    return x * gate


def store_once(tensor):
    return tensor


def z_pool(x, axis):
    maximum = ops.max(x, axis=axis, keepdims=True)
    return maximum, ops.mean(x, axis=axis, keepdims=True)


# --- convolutions ----------------------------------------------------------------------------


def plane_conv(plane, taps):
    k = int(taps.shape[0])
    return ops.conv(plane, ops.reshape(taps, (k, k, 1, 1)), 1, "same")


def channel_conv(values, taps):
    channels = values.shape[-1]
    k = int(taps.shape[0])
    mixed = ops.conv(
        ops.reshape(values, (-1, 1, channels, 1)), ops.reshape(taps, (1, k, 1, 1)), 1, "same"
    )
    return ops.reshape(mixed, (-1, channels))


def gather(x, indices, axis):
    return ops.take(x, indices, axis=axis)


def pad_spatial(x, pad):
    """Zero-pads an NHWC tensor by `pad` on each side of height and width."""
    if not pad:
        return x
    return ops.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])


# --- SimAM's energy gate ---------------------------------------------------------------------


def energy_gate(x, e_lambda):
    mean, var = spatial_moments(x)
    channels = x.shape[-1]
    count = ops.cast(spatial_count(x), x.dtype)
    energy = var * (count / ops.maximum(count - 1.0, 1.0)) + e_lambda
    centred = x - ops.reshape(mean, (-1, 1, 1, channels))
    d = centred * centred
    return ops.sigmoid(d / ops.reshape(4.0 * energy, (-1, 1, 1, channels)) + 0.5)


# --- batch normalisation ---------------------------------------------------------------------


def fold_batch_norm(bn, dtype):
    """An inference-mode BatchNormalization as a per-channel affine: `(scale, shift)` with
    `bn(z, training=False) == z * scale + shift`, in `dtype`.

    scale = gamma / sqrt(moving_variance + epsilon), shift = beta - moving_mean * scale; a BN
    without scale (`scale=False`) or offset (`center=False`) leaves gamma = 1 or beta = 0.
    """
    scale = ops.rsqrt(ops.cast(bn.moving_variance, dtype) + bn.epsilon)
    if bn.scale:
        scale = scale * ops.cast(bn.gamma, dtype)
    mean = ops.cast(bn.moving_mean, dtype) * scale
    shift = ops.cast(bn.beta, dtype) - mean if bn.center else -mean
    return scale, shift


# --- PyTorch-exact resampling (the gathers are `keras_recalib.ops.resize_axis`) ---------------


def axis_size(x, axis):
    """A static axis length as a Python int, else the dynamic one."""
    static = x.shape[axis]
    return int(static) if static is not None else ops.shape(x)[axis]


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
    dst = ops.cast(ops.arange(out_size), "float32")
    scale = ops.cast(in_size, "float32") / ops.cast(out_size, "float32")
    if interpolation == "nearest":
        return dst * scale
    return ops.maximum((dst + 0.5) * scale - 0.5, 0.0)


def _lower_index(source, in_size):
    if isinstance(source, np.ndarray):
        return np.minimum(np.floor(source).astype(np.int32), in_size - 1)
    return ops.minimum(ops.cast(ops.floor(source), "int32"), in_size - 1)


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
    weight = ops.clip(source - ops.cast(lower, "float32"), 0.0, 1.0)
    return lower, ops.minimum(lower + 1, in_size - 1), weight

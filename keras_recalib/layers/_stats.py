"""Spatial statistics shared by the layers (style pooling, group normalisation)."""

import tensorflow as tf


def spatial_count(x, axes=(1, 2)):
    """Number of elements reduced over `axes`, as a Python int when static."""
    shape = x.shape
    if all(shape[a] is not None for a in axes):
        count = 1
        for a in axes:
            count *= int(shape[a])
        return count
    dynamic = tf.shape(x)
    count = dynamic[axes[0]]
    for a in axes[1:]:
        count = count * dynamic[a]
    return count


def bessel_factor(count, dtype):
    """n / (n - 1), with n = 1 mapped to 1 so that the unbiased variance of one value is 0.

    PyTorch's `std(unbiased=True)` returns NaN for a single element (0/0); the layers define it
    as 0 instead so a 1x1 feature map keeps a finite output.
    """
    if isinstance(count, int):
        return tf.constant(count / max(count - 1, 1), dtype)
    n = tf.cast(count, dtype)
    return n / tf.maximum(n - 1.0, 1.0)


def safe_sqrt(value):
    """sqrt(value) for value >= 0 whose gradient at 0 is 0 instead of inf (then NaN)."""
    positive = value > 0
    # Scalar branches broadcast: `zeros_like` would stay a float op in int8 TFLite graphs.
    one = tf.constant(1.0, value.dtype)
    root = tf.sqrt(tf.where(positive, value, one))
    return tf.where(positive, root, tf.constant(0.0, value.dtype))


def style_pool(x, epsilon, unbiased, dtype):
    """Per-channel mean and std over height and width of an NHWC tensor.

    Returns two (batch, channels) tensors in `dtype`; std = sqrt(var + epsilon), var biased
    (1/HW) unless `unbiased` (1/(HW - 1)).
    """
    x = tf.cast(x, dtype)
    mean, var = tf.nn.moments(x, axes=[1, 2])
    if unbiased:
        var = var * bessel_factor(spatial_count(x), dtype)
    # Always the zero-safe root: an epsilon below float32's range (1e-50) adds nothing, and the
    # select acts on the (batch, channels) statistics only.
    std = safe_sqrt(var + tf.constant(epsilon, dtype)) if epsilon > 0 else safe_sqrt(var)
    return mean, std

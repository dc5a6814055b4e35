"""Spatial statistics shared by the layers (style pooling, group normalisation)."""

import numpy as np
import tensorflow as tf

# At most this many pixels per partial sum in the XLA path of `spatial_moments`.
_MAX_CHUNK = 32


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
    (1/HW) unless `unbiased` (1/(HW - 1)). The moments come from `spatial_moments`.
    """
    x = tf.cast(x, dtype)
    mean, var = spatial_moments(x)
    if unbiased:
        var = var * bessel_factor(spatial_count(x), dtype)
    eps = tf.constant(epsilon, dtype)
    # The zero-safe root unless the epsilon survives in `dtype` (1e-50 is 0 in float32): then
    # var + eps > 0 and a plain root is the same number with three fewer ops (and no SELECT,
    # which XNNPACK does not delegate, in TFLite).
    # A denormal epsilon may be flushed to zero, so it must be a normal number to count.
    positive = epsilon >= np.finfo(tf.as_dtype(dtype).as_numpy_dtype).tiny
    std = tf.sqrt(var + eps) if positive else safe_sqrt(var + eps)
    return mean, std


def spatial_moments(x):
    """Per-(batch, channel) mean and biased variance over height and width of an NHWC tensor.

    The semantics are those of `tf.nn.moments(x, axes=[1, 2])`, which computes them when the
    height or width is unknown. With a known spatial size one of two faster formulations
    computes the same two numbers (to float rounding; `tests/test_srm.py` checks both against
    float64 NumPy, also for values around 1e3 with a std of 1e-2):

    - Graph mode, eager and everything exported (SavedModel, TFLite): the mean and the mean
      squared deviation from it are two average poolings over the whole map, the same
      two-pass algorithm as `tf.nn.moments` (so as accurate), but average pooling is a oneDNN
      kernel in graph mode (AVERAGE_POOL_2D in TFLite, XNNPACK-delegated in float32 and int8)
      that reads the map two to three times faster than TensorFlow's generic reduction.
    - Under XLA (`jit_compile=True`): one pass over the map. The sums of d = x - s and of d^2
      are taken with a per-(batch, channel) shift s, the mean of the middle row, so that the
      variance mean(d^2) - mean(d)^2 does not cancel catastrophically when the mean is large
      against the std (a shift close to the mean keeps mean(d)^2 small against mean(d^2)).
      The sums are written as partial sums of up to 32 consecutive pixels (explicit slices
      and adds)
      followed by a reduction of the partials: XLA's CPU backend then emits vectorised loops,
      where a fused `reduce` over a non-minor axis runs element by element (about 3x slower
      than the `x * g` it precedes).

    Both fast paths have the analytic gradient, d mean / dx = 1/HW and
    d var / dx = 2 (x - mean) / HW (the derivative through the mean is zero, as
    `tf.nn.moments` also uses), computed in one elementwise expression.
    """
    height, width = x.shape[1], x.shape[2]
    if height is None or width is None:
        return tf.nn.moments(x, axes=[1, 2])
    if in_xla_context():
        return _shifted_moments(x)
    return _pooled_moments(x)


def channel_scale(x, gate):
    """`x * gate[:, None, None, :]` for an NHWC `x` and a (batch, channels) `gate`.

    The same product, with a gradient whose per-(batch, channel) sum, d gate = sum over
    height and width of dy * x, is an average pooling in graph mode and the vectorised partial
    sums of `spatial_moments` under XLA (TensorFlow's own gradient of the broadcast is a
    generic reduction, about 3x slower under XLA than the product itself). The sum runs in
    float32 for float16/bfloat16 inputs.
    """

    @tf.custom_gradient
    def scale(x, gate):
        broadcast = tf.reshape(gate, [-1, 1, 1, gate.shape[-1]])

        def grad(dy):
            dtype = tf.float32 if x.dtype in (tf.float16, tf.bfloat16) else x.dtype
            product = tf.cast(dy, dtype) * tf.cast(x, dtype)
            return dy * broadcast, tf.cast(spatial_sum(product), gate.dtype)

        return x * broadcast, grad

    # Stored once under XLA: fused into the product, the gate's chain would run per element.
    return scale(x, xla_barrier(gate))


def spatial_sum(t):
    """Sum over height and width of an NHWC tensor, (batch, channels): an average pooling in
    graph mode, vectorised partial sums under XLA (see `spatial_moments`)."""
    height, width = t.shape[1], t.shape[2]
    if height is None or width is None:
        return tf.reduce_sum(t, axis=[1, 2])
    if in_xla_context():
        return _partial_sums(t)[0]
    pooled = tf.nn.avg_pool2d(t, (int(height), int(width)), strides=1, padding="VALID")
    return tf.reshape(pooled, [-1, t.shape[-1]]) * tf.constant(height * width, t.dtype)


def in_xla_context():
    """True while tracing a function that XLA compiles (`jit_compile=True`)."""
    try:  # not public API: without it, the graph-mode formulation is used (same numbers)
        from tensorflow.python.ops import control_flow_util

        return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))
    except (ImportError, AttributeError):
        return False


def xla_barrier(tensor):
    """`tensor` unchanged; under XLA, computed once and stored (an optimisation barrier), in the
    forward pass and, for its gradient, in the backward pass.

    For small per-(batch, channel) statistics and gates: XLA's CPU backend otherwise fuses the
    elementwise chain that produces one into every consumer, and so recomputes it for every
    pixel of a full-size product (or of the full-size input gradient it is broadcast into).
    Outside XLA, or without the (non-public) operation, it returns its input.
    """
    if not in_xla_context():
        return tensor
    try:
        from tensorflow.compiler.tf2xla.python import xla as tf2xla
    except ImportError:
        return tensor

    @tf.custom_gradient
    def barrier(value):
        def grad(upstream):
            return tf2xla.optimization_barrier(upstream)[0]

        return tf2xla.optimization_barrier(value)[0], grad

    return barrier(tensor)


def _chunk(count):
    """Pixels per partial sum: the largest divisor of the pixel count up to `_MAX_CHUNK` and
    below the count (no remainder), else `_MAX_CHUNK // 2` and a remainder.

    There are always at least two partials: a reduction of one partial would vanish, and XLA
    would then fuse the whole partial-sum loop into every consumer of the statistics, i.e.
    recompute it for each pixel of the gradient or the product.
    """
    divisors = [k for k in range(2, min(_MAX_CHUNK, count // 2) + 1) if count % k == 0]
    if divisors:
        return max(divisors)
    return max(1, min(_MAX_CHUNK // 2, count // 2))


def _partial_sums(t, shift=None, squares=False):
    """Sums over height and width of t - shift (and of its square) as XLA-friendly partial
    sums; `shift` is None or (batch, 1, 1, channels).

    Sums of a few dozen consecutive pixels are written as explicit slices and adds (one
    vectorised elementwise loop over the map), then a reduction of the partials. The shift is
    subtracted slice by slice: subtracted from the whole map first, XLA would materialise the
    difference rather than recompute it in both loops.
    """
    height, width, channels = (int(d) for d in t.shape[1:])
    count = height * width
    t = tf.reshape(t, [-1, count, channels])
    if shift is not None:
        shift = tf.reshape(shift, [-1, 1, channels])
    k = _chunk(count)
    full = count // k * k
    chunks = tf.reshape(t[:, :full] if full < count else t, [-1, full // k, k, channels])

    def term(e):
        return e if shift is None else e - shift

    part_sum = part_squares = None
    for j in range(k):
        e = term(chunks[:, :, j])
        part_sum = e if part_sum is None else part_sum + e
        if squares:
            part_squares = e * e if part_squares is None else part_squares + e * e
    total = tf.reduce_sum(part_sum, axis=1)
    total_squares = tf.reduce_sum(part_squares, axis=1) if squares else None
    for j in range(full, count):
        e = term(t[:, j : j + 1])[:, 0]
        total = total + e
        if squares:
            total_squares = total_squares + e * e
    return total, total_squares


def _moments_gradient(x, mean, count):
    def grad(d_mean, d_var):
        # Per-(batch, channel) coefficients first: three full-size ops, not five.
        slope = tf.reshape(d_var * (2.0 / count), [-1, 1, 1, x.shape[-1]])
        offset = tf.reshape(d_mean * (1.0 / count), [-1, 1, 1, x.shape[-1]])
        # x - mean needs no gradient: without the dependency, TensorFlow's executor runs it as
        # soon as the forward pass has the mean, and the full-size difference then waits in
        # memory for the backward pass (one extra activation-sized tensor per layer).
        with tf.control_dependencies([slope]):
            deviation = x - tf.reshape(mean, [-1, 1, 1, x.shape[-1]])
        return deviation * slope + offset

    return grad


@tf.custom_gradient
def _pooled_moments(x):
    height, width, channels = (int(d) for d in x.shape[1:])
    size = (height, width)
    mean = tf.nn.avg_pool2d(x, size, strides=1, padding="VALID")
    # A subtraction and a product rather than squared_difference: int8 TFLite has no fast
    # kernel for the latter (about 15x slower than SUB + MUL); Grappler fuses the pair.
    deviation = x - mean
    var = tf.nn.avg_pool2d(deviation * deviation, size, strides=1, padding="VALID")
    mean, var = tf.reshape(mean, [-1, channels]), tf.reshape(var, [-1, channels])
    return (mean, var), _moments_gradient(x, mean, height * width)


@tf.custom_gradient
def _shifted_moments(x):
    height, width = int(x.shape[1]), int(x.shape[2])
    count = height * width
    shift = tf.reduce_mean(x[:, height // 2 : height // 2 + 1], axis=2, keepdims=True)
    total, squares = _partial_sums(x, shift, squares=True)
    mean_d = total / count
    var = tf.maximum(squares / count - mean_d * mean_d, 0.0)
    mean = shift[:, 0, 0, :] + mean_d
    return (mean, var), _moments_gradient(x, mean, count)

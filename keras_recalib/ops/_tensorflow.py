"""TensorFlow's fast implementations of the primitives: the package's one place for speed tricks.

Every function here computes what its namesake in `_reference` (written in `keras.ops`)
computes (equivalence-tested in tests/test_ops.py, forward and gradient, graph mode and XLA) and
is chosen over it by the one switch in `keras_recalib.ops` (`set_fast_paths`). Where a fast
path does not apply, the moments fall back to `tf.nn.moments` itself (the reference's numbers
in TensorFlow's own ops, which int8 TFLite quantizes as before) and the rest to the reference.
What the tricks are:

- Graph mode, eager and everything exported (SavedModel, TFLite): spatial statistics as
  whole-map average poolings (a oneDNN kernel in graph mode, AVERAGE_POOL_2D in TFLite,
  delegated to XNNPACK in float32 and int8) instead of TensorFlow's generic reduction, which
  reads the map two to three times slower; one-channel "SAME" convolutions of thin maps as a
  banded convolution along the long side (oneDNN's one-channel kernel is ~5x slower there).
- Traced for TFLite (`convert_tflite`, `traced_for`): spatial moments as MEANs, which XNNPACK
  runs faster than whole-map poolings: in float one pass of x and x^2 (no full-size
  subtraction); with int8 activations the two-pass form, which quantizes well.
- Under XLA (`jit_compile=True`): sums as partial sums of up to 32 consecutive pixels in explicit
  slices and adds, then a reduction of the partials (XLA's CPU backend runs a fused reduction
  over a non-minor axis element by element, ~3x slower than the product it precedes); one-pass
  shifted moments; one-channel convolutions as sums of shifted taps (XLA's generic convolution
  loop is 10-20x slower); small statistics and gates behind an optimisation barrier, so XLA
  stores them once instead of recomputing their elementwise chain for every pixel.
- Analytic gradients (in all modes) where TensorFlow's own is slower or keeps a larger tensor
  alive: the moments, `channel_scale`'s per-channel sum and SimAM's energy gate.

The two non-public TensorFlow APIs the package uses are imported here and nowhere else:
`control_flow_util.GraphOrParentsInXlaContext` (is this function being compiled by XLA?) and
`tf2xla`'s `optimization_barrier`. If a TensorFlow release moves either, `available()` says so,
a warning names it once, the affected fast path falls back to the reference semantics, and the
guard tests in tests/test_ops.py fail.
"""

import warnings

import numpy as np
import tensorflow as tf

from keras_recalib.ops import _reference, _target

try:  # non-public: the XLA-context test of TensorFlow's own control flow
    from tensorflow.python.ops import control_flow_util as _control_flow_util

    _xla_context_check = _control_flow_util.GraphOrParentsInXlaContext
except (ImportError, AttributeError):  # pragma: no cover - guarded by tests/test_ops.py
    _xla_context_check = None

try:  # non-public: XLA's optimisation barrier as a TensorFlow op
    from tensorflow.compiler.tf2xla.python import xla as _tf2xla

    _optimization_barrier = _tf2xla.optimization_barrier
except (ImportError, AttributeError):  # pragma: no cover - guarded by tests/test_ops.py
    _optimization_barrier = None

# At most this many pixels per partial sum in the XLA paths, and at least this many partials
# where the map allows (see `_chunk`).
_MAX_CHUNK = 32
_MIN_PARTIALS = 32
# Largest short side of a one-channel map convolved as a banded matrix (graph mode), and the
# largest for which the banded convolution's gradients serve the XLA path.
_BANDED_MAX = 16
_BANDED_MAX_XLA = 64

_warned = set()


def available():
    """Which non-public TensorFlow APIs the fast paths found: name -> bool."""
    return {
        "xla_context": _xla_context_check is not None,
        "optimization_barrier": _optimization_barrier is not None,
    }


def _missing(name):
    if name not in _warned:
        _warned.add(name)
        warnings.warn(
            f"keras_recalib: this TensorFlow ({tf.__version__}) lacks the non-public API behind "
            f"the {name!r} fast path; the layers fall back to the reference formulation (same "
            "outputs, slower under XLA).",
            RuntimeWarning,
            stacklevel=3,
        )


def in_xla_context():
    """True while tracing a function that XLA compiles (`jit_compile=True`)."""
    if _xla_context_check is None:
        _missing("xla_context")
        return False
    return bool(_xla_context_check(tf.compat.v1.get_default_graph()))


def _static_spatial(x):
    return x.shape[1] is not None and x.shape[2] is not None


# --- barriers --------------------------------------------------------------------------------


def store_once(tensor):
    """Under XLA, `tensor` behind an optimisation barrier in the forward and backward pass;
    elsewhere `tensor` itself."""
    if not in_xla_context():
        return tensor
    if _optimization_barrier is None:
        _missing("optimization_barrier")
        return tensor

    @tf.custom_gradient
    def barrier(value):
        def grad(upstream):
            return _optimization_barrier(upstream)[0]

        return _optimization_barrier(value)[0], grad

    return barrier(tensor)


# --- spatial statistics ----------------------------------------------------------------------


def _chunk(count):
    """Pixels per partial sum: the largest divisor of the pixel count up to `_MAX_CHUNK` that
    leaves at least `_MIN_PARTIALS` partials; on maps too small for that, the largest divisor
    below the count; else `_MAX_CHUNK // 2` and a remainder.

    Few partials per image are slow: at batch 1 on one thread an SRM-like gate with 28
    partials of 28 pixels (28x28 maps) or 7 of 28 (14x14) took 5-8x the `x * g` floor
    forward, with 49 partials of 16 or of 4 pixels 1.3x; SRM under XLA at batch 2 took
    0.21-0.29x its previous time at those maps, and 0.89-0.97x at batch 16
    (`benchmarks/compare_revisions.py`, one thread; see benchmarks/NOTES.md).

    There are always at least two partials: a reduction of one partial would vanish, and XLA
    would then fuse the whole partial-sum loop into every consumer of the statistics, i.e.
    recompute it for each pixel of the gradient or the product.
    """
    divisors = [k for k in range(2, min(_MAX_CHUNK, count // 2) + 1) if count % k == 0]
    many = [k for k in divisors if count // k >= _MIN_PARTIALS]
    if many:
        return max(many)
    if divisors:
        return max(divisors)
    return max(1, min(_MAX_CHUNK // 2, count // 2))


def _partial_sums(t, shift=None, squares=False):
    """Sums over height and width of t - shift (and of its square) as XLA-friendly partial
    sums; `shift` is None or (batch, 1, 1, channels).

    The shift is subtracted slice by slice: subtracted from the whole map first, XLA would
    materialise the difference rather than recompute it in both loops.
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
    """d mean / dx = 1/HW and d var / dx = 2 (x - mean) / HW (the term through the mean is
    zero, as in `tf.nn.moments`), in one elementwise expression."""

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
    """Two whole-map average poolings: the mean, then the mean squared deviation from it (the
    same two-pass algorithm as `tf.nn.moments`, so as accurate)."""
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
    """One pass: sums of d = x - s and d^2 with a per-(batch, channel) shift s, the middle row's
    mean, so that mean(d^2) - mean(d)^2 does not cancel catastrophically when the mean is large
    against the std."""
    height, width = int(x.shape[1]), int(x.shape[2])
    count = height * width
    shift = tf.reduce_mean(x[:, height // 2 : height // 2 + 1], axis=2, keepdims=True)
    total, squares = _partial_sums(x, shift, squares=True)
    mean_d = total / count
    var = tf.maximum(squares / count - mean_d * mean_d, 0.0)
    mean = shift[:, 0, 0, :] + mean_d
    return (mean, var), _moments_gradient(x, mean, count)


@tf.custom_gradient
def _one_pass_moments(x):
    """Float TFLite: the mean and the mean square as two MEANs, var = mean(x^2) - mean^2.
    XNNPACK runs a MEAN faster than a whole-map AVERAGE_POOL_2D, and a same-shape square faster
    than a broadcast subtraction followed by a product (about 1.5x the `x * g` floor instead of
    2.5x at 56x56x256, batch 1). The price is float32 cancellation: the variance's rounding
    error grows like (mean / std)^2 * 2^-24 relative, harmless for the activations gates see
    (bounded in tests/test_ops.py); `set_fast_paths(False)` restores `tf.nn.moments`."""
    height, width = int(x.shape[1]), int(x.shape[2])
    mean = tf.reduce_mean(x, axis=[1, 2])
    mean_square = tf.reduce_mean(x * x, axis=[1, 2])
    var = tf.maximum(mean_square - mean * mean, 0.0)
    return (mean, var), _moments_gradient(x, mean, height * width)


@tf.custom_gradient
def _two_pass_mean_moments(x):
    """Int8 TFLite: two passes (the mean, then the mean squared deviation) as MEANs. In int8 a
    one-pass mean(x^2) - mean^2 would subtract two quantized values whose difference is small
    against them unless the mean is near zero; the deviation x - mean quantizes on its own
    scale. MEAN instead of AVERAGE_POOL_2D: faster in XNNPACK's int8 kernels too."""
    height, width, channels = (int(d) for d in x.shape[1:])
    mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    # A subtraction and a product rather than squared_difference: int8 TFLite has no fast
    # kernel for the latter (about 15x slower than SUB + MUL).
    deviation = x - mean
    var = tf.reduce_mean(deviation * deviation, axis=[1, 2])
    mean = tf.reshape(mean, [-1, channels])
    return (mean, var), _moments_gradient(x, mean, height * width)


_TFLITE_MOMENTS = {"tflite": _one_pass_moments, "tflite_int8": _two_pass_mean_moments}


def spatial_moments(x):
    if not _static_spatial(x):
        # tf.nn.moments itself: the reference's numbers, in TensorFlow's own ops.
        return tf.nn.moments(x, axes=[1, 2])
    if in_xla_context():
        return _shifted_moments(x)
    if _target.current() in _TFLITE_MOMENTS:
        return _TFLITE_MOMENTS[_target.current()](x)
    return _pooled_moments(x)


def spatial_sum(x):
    if not _static_spatial(x):
        return _reference.spatial_sum(x)
    if in_xla_context():
        return _partial_sums(x)[0]
    height, width = int(x.shape[1]), int(x.shape[2])
    pooled = tf.nn.avg_pool2d(x, (height, width), strides=1, padding="VALID")
    return tf.reshape(pooled, [-1, x.shape[-1]]) * tf.constant(height * width, x.dtype)


def spatial_mean(x):
    return store_once(_reference.spatial_mean(x))


def axis_moments(x, axis):
    # Only under XLA: in graph mode and exports tf.nn.moments' own ops are kept, since int8
    # TFLite measured more accurate with them (cosine 0.9992 against 0.9970 for SGE).
    if not in_xla_context() or x.shape.rank != 3 or axis != 1 or x.shape[1] is None:
        return tf.nn.moments(x, axes=[axis], keepdims=True)
    mean, var = spatial_moments(tf.expand_dims(x, 2))  # (B, N, 1, G): N as the height
    return tf.expand_dims(mean, 1), tf.expand_dims(var, 1)


# --- gating products -------------------------------------------------------------------------


def channel_scale(x, gate):
    """The product with a gradient whose per-(batch, channel) sum d gate = sum(dy * x) goes
    through `spatial_sum` (TensorFlow's own gradient of the broadcast is a generic reduction,
    about 3x slower under XLA than the product itself); that sum runs in float32 for
    float16/bfloat16 inputs."""

    @tf.custom_gradient
    def scale(x, gate):
        broadcast = tf.reshape(gate, [-1, 1, 1, gate.shape[-1]])

        def grad(dy):
            dtype = tf.float32 if x.dtype in (tf.float16, tf.bfloat16) else x.dtype
            product = tf.cast(dy, dtype) * tf.cast(x, dtype)
            return dy * broadcast, tf.cast(spatial_sum(product), gate.dtype)

        return x * broadcast, grad

    # Stored once under XLA: fused into the product, the gate's chain would run per element.
    return scale(x, store_once(gate))


def gate_product(x, gate):
    return x * store_once(gate)


def gather(x, indices, axis):
    # tf.gather itself: keras.ops.take adds a LESS and a SELECT_V2 per gather that wrap
    # negative indices, which these never are, and which stay in a TFLite graph whose
    # spatial size is unknown (the indices are then computed, not constants).
    return tf.gather(x, indices, axis=axis)


def z_pool(x, axis):
    maximum, mean = _reference.z_pool(x, axis)
    return store_once(maximum), store_once(mean)


# --- one-channel convolutions ----------------------------------------------------------------


def plane_conv(plane, taps):
    """Under XLA the sum of k^2 shifted copies of the padded map (`_shifted_taps`); elsewhere,
    for a map whose short side is at most 16, a convolution along the long side with the short
    side as channels (`_banded_conv`); otherwise, and for unknown sizes, the reference."""
    if _static_spatial(plane):
        if in_xla_context():
            return _shifted_taps(plane, taps)
        if min(plane.shape[1], plane.shape[2]) <= _BANDED_MAX:
            return _banded_conv(plane, taps)
    return _reference.plane_conv(plane, taps)


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
    """`plane_conv` as a convolution along the long side with the short side as channels."""
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
    """`plane_conv` as the sum of k^2 shifted, scaled copies of the zero-padded map.

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

    return store_once(_shifted_sum(plane, taps)), grad


def channel_conv(values, taps):
    """Under XLA the sum of k shifted, scaled copies with its analytic gradient (XLA's own,
    through the slices, is several times slower than the forward pass); elsewhere the
    reference convolution (CONV_2D in TFLite)."""
    if in_xla_context():
        return _shifted_channels(values, taps)
    return _reference.channel_conv(values, taps)


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
    padded, total = _shifted_sum_1d(values, taps)

    def grad(upstream):
        _, d_values = _shifted_sum_1d(upstream, tf.reverse(taps, [0]))
        channels = values.shape[-1]
        d_taps = tf.stack(
            [tf.reduce_sum(padded[:, j : j + channels] * upstream) for j in range(taps.shape[0])]
        )
        return d_values, d_taps

    return total, grad


# --- SimAM's energy gate ---------------------------------------------------------------------


def energy_gate(x, e_lambda):
    """The reference formula with its analytic gradient; the variance comes from
    `spatial_moments` and the gradient's two per-(batch, channel) sums from `spatial_sum`
    (XLA's CPU backend runs reductions of fused elementwise expressions element by element)."""

    @tf.custom_gradient
    def gate(x):
        mean, var = spatial_moments(x)
        channels = x.shape[-1]
        count = tf.cast(_reference.spatial_count(x), x.dtype)
        scale = count / tf.maximum(count - 1.0, 1.0)
        energy = store_once(var * scale + e_lambda)
        mean = tf.reshape(store_once(mean), [-1, 1, 1, channels])
        inverse = tf.reshape(0.25 / energy, [-1, 1, 1, channels])  # 1 / (4 energy)
        centred = x - mean
        d = tf.square(centred)
        s = tf.sigmoid(d * inverse + 0.5)

        def grad(ds):
            w = ds * s * (1.0 - s) * inverse  # dL/dd
            # Through the energy (its variance) and through the mean inside d.
            d_energy = -spatial_sum(w * d) / energy
            d_var = d_energy * scale
            d_mean = -2.0 * spatial_sum(w * centred)
            slope = tf.reshape(store_once(d_var) * (2.0 / count), [-1, 1, 1, channels])
            offset = tf.reshape(store_once(d_mean) / count, [-1, 1, 1, channels])
            return centred * (2.0 * w + slope) + offset

        return s, grad

    return gate(x)

"""The primitives the layers' mathematics is written in, and the one switch for fast paths.

Like `keras.ops`, each primitive is declared here once, with its semantics; an implementation
module computes it. `_reference` states the semantics in `keras.ops` (two-pass moments as
`tf.nn.moments` computes them, reductions, broadcast products, convolutions) and is what runs on
JAX and PyTorch; `_tensorflow` holds TensorFlow's fast formulations (whole-map pooling in graph
mode and exports, XLA partial sums and shifted taps, optimisation barriers, analytic gradients)
and is the only module that imports TensorFlow or touches its non-public APIs. Nothing above
this package knows which one runs.

The switch: fast paths are on by default; `set_fast_paths(False)`, the `fast_paths(False)`
context manager, or the environment variable `KERAS_RECALIB_FAST_PATHS=0` select the reference
implementations. The choice is made when a function is traced (a `tf.function` keeps the
implementation it was traced with), and it never changes what is computed, only how: the
equivalence tests in tests/test_ops.py compare the two, forward and gradient.

Formulations can also depend on the runtime a function is traced for: `traced_for("tflite")`
(which `export.convert_tflite` uses) selects the ones measured fastest in TFLite.

A backend gets fast paths with one entry in `_IMPLEMENTATIONS`: the name of a module that
defines any of the dispatched primitives (the rest fall back to the reference). Only the active
backend's module is imported, so JAX and PyTorch users need no TensorFlow.
"""

import contextlib
import importlib
import os

import keras

from keras_recalib.ops import _reference
from keras_recalib.ops._reference import (
    axis_size,
    bessel_factor,
    dtype_of,
    fold_batch_norm,
    linear_taps,
    nearest_indices,
    pad_spatial,
    safe_sqrt,
    spatial_count,
    sqrt_plus_epsilon,
)
from keras_recalib.ops._target import traced_for

__all__ = [
    "available",
    "axis_moments",
    "axis_size",
    "bessel_factor",
    "channel_conv",
    "channel_scale",
    "dtype_of",
    "energy_gate",
    "fast_paths",
    "fast_paths_enabled",
    "fold_batch_norm",
    "gate_product",
    "gather",
    "nearest_indices",
    "pad_spatial",
    "plane_conv",
    "resize",
    "resize_axis",
    "safe_sqrt",
    "set_fast_paths",
    "spatial_count",
    "spatial_mean",
    "spatial_moments",
    "spatial_sum",
    "sqrt_plus_epsilon",
    "store_once",
    "traced_for",
    "z_pool",
    "zpool_conv",
]

# backend name -> module of fast implementations (imported for the active backend only)
_IMPLEMENTATIONS = {"tensorflow": "keras_recalib.ops._tensorflow"}
_BACKEND = keras.backend.backend()
_fast_module = (
    importlib.import_module(_IMPLEMENTATIONS[_BACKEND]) if _BACKEND in _IMPLEMENTATIONS else None
)
_fast = os.environ.get("KERAS_RECALIB_FAST_PATHS", "1").strip().lower() not in ("0", "false")


def set_fast_paths(enabled):
    """Turns the fast implementations on (the default) or off, for functions traced from now."""
    global _fast
    if not isinstance(enabled, bool):
        raise ValueError(f"Argument `enabled` must be a bool. Received: enabled={enabled!r}")
    _fast = enabled


def fast_paths_enabled():
    """Whether the fast implementations are selected."""
    return _fast


@contextlib.contextmanager
def fast_paths(enabled):
    """`with fast_paths(False): ...` traces with the reference implementations."""
    previous = _fast
    set_fast_paths(enabled)
    try:
        yield
    finally:
        set_fast_paths(previous)


def available():
    """What the active backend's fast module found of the non-public APIs it relies on (an
    empty dict for a backend without fast paths)."""
    return {} if _fast_module is None else _fast_module.available()


def _impl(name):
    if _fast and _fast_module is not None:
        fast = getattr(_fast_module, name, None)
        if fast is not None:
            return fast
    return getattr(_reference, name)


# --- the dispatched primitives ---------------------------------------------------------------


def spatial_moments(x):
    """Per-(batch, channel) mean and biased variance over height and width of an NHWC tensor:
    `tf.nn.moments(x, axes=[1, 2])` (two passes: the mean, then the mean squared deviation),
    two (batch, channels) tensors, on every backend. The gradient is that of `tf.nn.moments`
    (the variance's derivative through the mean is zero)."""
    return _impl("spatial_moments")(x)


def spatial_sum(x):
    """Sum over height and width of an NHWC tensor, (batch, channels)."""
    return _impl("spatial_sum")(x)


def spatial_mean(x):
    """Mean over height and width of an NHWC tensor, (batch, channels)."""
    return _impl("spatial_mean")(x)


def axis_moments(x, axis):
    """Mean and biased variance over one `axis`, kept with size 1 (`tf.nn.moments` with
    `keepdims=True`)."""
    return _impl("axis_moments")(x, axis)


def channel_scale(x, gate):
    """`x * gate[:, None, None, :]` for an NHWC `x` and a (batch, channels) `gate`."""
    return _impl("channel_scale")(x, gate)


def gate_product(x, gate):
    """`x * gate` for a `gate` that broadcasts against `x` and is computed once per position or
    channel (a compiler should store it rather than recompute it per element)."""
    return _impl("gate_product")(x, gate)


def store_once(tensor):
    """`tensor`, unchanged; a hint that a small statistic is to be computed once and stored."""
    return _impl("store_once")(tensor)


def gather(x, indices, axis):
    """The slices of `x` at non-negative integer `indices` along `axis` (`keras.ops.take`
    without its wrapping of negative indices)."""
    return _impl("gather")(x, indices, axis)


def z_pool(x, axis):
    """The max and the mean over `axis` (kept, size 1), as two maps: the official Z-pool order
    (max first) of CBAM's spatial gate and Triplet Attention."""
    return _impl("z_pool")(x, axis)


def plane_conv(plane, taps):
    """The "SAME" convolution (cross-correlation, (k - 1) // 2 zeros on each side) of a
    one-channel (batch, h, w, 1) map with odd (k, k) `taps`."""
    return _impl("plane_conv")(plane, taps)


def channel_conv(values, taps):
    """The "SAME" 1-D cross-correlation of (batch, channels) `values` with odd-length `taps`
    along the channels: (k - 1) // 2 zeros on each side, as ECA's official `Conv1d`."""
    return _impl("channel_conv")(values, taps)


def energy_gate(x, e_lambda):
    """SimAM's gate: sigmoid(d / (4 (sum(d) / n + e_lambda)) + 1/2) with d = (x - mean)^2 per
    (batch, channel) over height and width and n = max(HW - 1, 1)."""
    return _impl("energy_gate")(x, e_lambda)


# --- compositions ----------------------------------------------------------------------------


def zpool_conv(maximum, mean, kernel):
    """The official k x k convolution (no bias) of the stacked [max; mean] maps, as two
    single-map convolutions summed; `kernel` is (k, k, 2, 1), input channel 0 for the max.

    Concatenated, the two maps would share one int8 scale in quantized TFLite, where the mean,
    much narrower than the max, would lose its precision.
    """
    return plane_conv(maximum, kernel[:, :, 0, 0]) + plane_conv(mean, kernel[:, :, 1, 0])


def resize_axis(x, out_size, axis, interpolation="nearest"):
    """Resizes NHWC `x` along `axis` (1 or 2) to `out_size` like PyTorch's `F.interpolate`.

    Built from gathers, which (unlike TensorFlow's ResizeNearestNeighbor gradient) compile
    under XLA and convert to TFLite built-in ops.
    """
    in_size = axis_size(x, axis)
    if interpolation == "nearest":
        return gather(x, nearest_indices(in_size, out_size), axis)
    lower, upper, weight = linear_taps(in_size, out_size)
    weight = keras.ops.reshape(
        keras.ops.cast(weight, x.dtype), (-1, 1, 1) if axis == 1 else (-1, 1)
    )
    low = gather(x, lower, axis)
    return low + (gather(x, upper, axis) - low) * weight


def resize(x, height, width, interpolation="nearest"):
    """Resizes NHWC `x` to (height, width) like PyTorch's `F.interpolate` (default: nearest)."""
    x = resize_axis(x, height, 1, interpolation)
    return resize_axis(x, width, 2, interpolation)

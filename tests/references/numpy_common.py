"""NumPy building blocks the references share: float64, NHWC, PyTorch's conventions
(cross-correlation, zero padding, floor-mode pooling, `nearest` as floor(dst * in / out))."""

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def moments(x, axis, *, unbiased=False, keepdims=False):
    """Mean and variance over `axis`; `unbiased` divides by n - 1, except on a single element
    (whose sum of squares is 0 anyway)."""
    axes = tuple(np.atleast_1d(axis))
    n = int(np.prod([x.shape[a] for a in axes]))
    mean = x.mean(axis=axes, keepdims=True)
    squares = ((x - mean) ** 2).sum(axis=axes, keepdims=keepdims)
    var = squares / (n - 1) if unbiased and n > 1 else squares / n
    return (mean if keepdims else mean.squeeze(axes)), var


def batch_norm(z, gamma, beta, moving_mean, moving_var, *, training=False, eps=1e-5):
    """BatchNormalization of channels-last `z`: the batch's biased statistics over every axis
    but the last in training, the moving ones otherwise."""
    if training:
        axes = tuple(range(z.ndim - 1))
        mean, var = z.mean(axis=axes), z.var(axis=axes)
    else:
        mean, var = moving_mean, moving_var
    return (z - mean) / np.sqrt(var + eps) * gamma + beta


def _window(x, i, j, oh, ow, stride):
    """The padded input under tap (i, j) of a kernel at each of the (oh, ow) output positions."""
    return x[:, i : i + stride * (oh - 1) + 1 : stride, j : j + stride * (ow - 1) + 1 : stride]


def conv2d(x, kernel, stride=1, padding=0):
    """PyTorch's bias-free Conv2d on NHWC `x`; `kernel` in torch layout (out, in, kh, kw)."""
    x = np.pad(x, [(0, 0), (padding, padding), (padding, padding), (0, 0)])
    kh, kw = kernel.shape[2:]
    oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, kernel.shape[0]))
    for i in range(kh):
        for j in range(kw):
            patch = _window(x, i, j, oh, ow, stride)
            out += patch @ kernel[:, :, i, j].T
    return out


def depthwise_conv2d(x, kernel, stride=1, padding=0):
    """Depthwise bias-free cross-correlation of NHWC `x` with a (kh, kw, channels) kernel."""
    x = np.pad(x, [(0, 0), (padding, padding), (padding, padding), (0, 0)])
    kh, kw, _ = kernel.shape
    oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, x.shape[3]))
    for i in range(kh):
        for j in range(kw):
            patch = _window(x, i, j, oh, ow, stride)
            out += patch * kernel[i, j]
    return out


def avg_pool2d(x, kernel, stride, padding=0):
    """PyTorch's avg_pool2d on NHWC `x`: floor mode, padded positions not counted
    (count_include_pad=False); `kernel` and `stride` are ints or (height, width) pairs."""
    (kh, kw), (sh, sw) = np.broadcast_to(kernel, 2), np.broadcast_to(stride, 2)
    _, h, w, _ = x.shape
    oh, ow = (h + 2 * padding - kh) // sh + 1, (w + 2 * padding - kw) // sw + 1
    out = np.zeros((x.shape[0], oh, ow, x.shape[3]))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * sh - padding, j * sw - padding
            window = x[:, max(r0, 0) : min(r0 + kh, h), max(c0, 0) : min(c0 + kw, w)]
            out[:, i, j] = window.mean(axis=(1, 2))
    return out


def resize(x, height, width, mode="nearest"):
    """PyTorch's interpolate on NHWC `x`: `nearest` takes source floor(dst * in / out),
    `bilinear` is align_corners=False."""

    def axis_weights(n_in, n_out):
        m = np.zeros((n_out, n_in))
        for d in range(n_out):
            if mode == "nearest":
                m[d, min(d * n_in // n_out, n_in - 1)] = 1.0
            else:
                src = max((d + 0.5) * n_in / n_out - 0.5, 0.0)
                i0 = min(int(np.floor(src)), n_in - 1)
                i1 = min(i0 + 1, n_in - 1)
                m[d, i0] += 1.0 - (src - i0)
                m[d, i1] += src - i0
        return m

    mh, mw = axis_weights(x.shape[1], height), axis_weights(x.shape[2], width)
    return np.einsum("ph,bhwc,qw->bpqc", mh, x, mw)

"""SCConv (Liu et al., CVPR 2020), from the paper, the seed's `SCConv` and the official code,
MCG-NKU/SCNet (stride on k1 and k4, `filters` as the official code's planes)."""

import numpy as np

from references.numpy_common import avg_pool2d, batch_norm, conv2d, resize, sigmoid


def scconv(x, weights, *, training, pooling_r=4, stride=1, mode="nearest"):
    """SCConv on NHWC `x`; `weights[k]` = (torch conv weight, (g, b, mean, var))."""
    x = np.asarray(x, np.float64)
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]

    def k(name, t, s=1):
        kernel, bn = weights[name]
        return batch_norm(conv2d(t, kernel, s, padding=1), *bn, training=training)

    # A pooling window longer than the map shrinks to it.
    window = (min(pooling_r, x1.shape[1]), min(pooling_r, x1.shape[2]))
    up = resize(k("k2", avg_pool2d(x1, window, window)), x1.shape[1], x1.shape[2], mode)
    calibrated = k("k3", x1) * sigmoid(x1 + up)
    return np.concatenate([k("k4", calibrated, stride), k("k1", x2, stride)], axis=-1)

"""Independent NumPy implementations of the modules, written from the papers' equations and
the official code, sharing nothing with the package."""

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def batch_norm(z, gamma, beta, mean, var, eps):
    return (z - mean) / np.sqrt(var + eps) * gamma + beta


def srm(x, cfc, bn=None, *, training=False, epsilon=1e-5, unbiased=False, norm_epsilon=1e-5):
    """SRM on NHWC `x`. `bn` = (gamma, beta, moving_mean, moving_var) or None."""
    x = np.asarray(x, np.float64)
    b, h, w, c = x.shape
    flat = x.reshape(b, h * w, c)
    mean = flat.mean(axis=1)
    n = h * w
    sq = ((flat - mean[:, None, :]) ** 2).sum(axis=1)
    var = sq / (n - 1) if (unbiased and n > 1) else sq / n
    std = np.sqrt(var + epsilon)
    z = mean * cfc[:, 0] + std * cfc[:, 1]
    if bn is not None:
        gamma, beta, moving_mean, moving_var = bn
        if training:
            z = batch_norm(z, gamma, beta, z.mean(0), z.var(0), norm_epsilon)
        else:
            z = batch_norm(z, gamma, beta, moving_mean, moving_var, norm_epsilon)
    return x * sigmoid(z)[:, None, None, :]

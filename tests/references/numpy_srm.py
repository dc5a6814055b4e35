"""SRM (Lee et al., ICCV 2019), from the paper and the official code,
hyunjaelee410/style-based-recalibration-module (`SRMLayer`)."""

import numpy as np

from references.numpy_common import batch_norm, moments, sigmoid


def srm(x, cfc, bn=None, *, training=False, epsilon=1e-5, unbiased=False, norm_epsilon=1e-5):
    """SRM on NHWC `x`. `bn` = (gamma, beta, moving_mean, moving_var) or None."""
    x = np.asarray(x, np.float64)
    b, h, w, c = x.shape
    mean, var = moments(x.reshape(b, h * w, c), axis=1, unbiased=unbiased)
    std = np.sqrt(var + epsilon)
    z = mean * cfc[:, 0] + std * cfc[:, 1]
    if bn is not None:
        z = batch_norm(z, *bn, training=training, eps=norm_epsilon)
    return x * sigmoid(z)[:, None, None, :]

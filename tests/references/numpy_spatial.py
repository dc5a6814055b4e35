"""Gates that vary over positions: Coordinate Attention (Hou et al., CVPR 2021), Triplet
Attention (Misra et al., WACV 2021), SGE (Li et al., 2019) and SimAM (Yang et al., ICML 2021),
each from its paper and official code (houqb/CoordAttention, landskape-ai/triplet-attention,
implus/PytorchInsight, ZjjConan/SimAM)."""

import numpy as np

from references.numpy_common import batch_norm, conv2d, moments, sigmoid


def h_swish(z):
    return z * np.clip(z + 3.0, 0.0, 6.0) / 6.0


def coordinate_attention(x_nhwc, weights, *, training, eps=1e-5):
    """CA, NCHW like the official `CoordAtt`. `weights` in PyTorch layout: conv weights
    (out, in) of the 1x1 kernels, biases, BN."""
    x = np.asarray(x_nhwc, np.float64).transpose(0, 3, 1, 2)
    _, _, h, _ = x.shape
    # pool_h keeps H (mean over W); pool_w keeps W; both strips concatenated along dim 2.
    y = np.concatenate([x.mean(axis=3), x.mean(axis=2)], axis=2)  # (n, c, h + w)
    y = np.einsum("mc,ncl->nml", weights["conv1.weight"], y) + weights["conv1.bias"][:, None]
    bn = [weights[f"bn1.{name}"] for name in ("weight", "bias", "running_mean", "running_var")]
    y = batch_norm(y.transpose(0, 2, 1), *bn, training=training, eps=eps).transpose(0, 2, 1)
    y = h_swish(y)
    y_h, y_w = y[:, :, :h], y[:, :, h:]
    a_h = sigmoid(
        np.einsum("cm,nml->ncl", weights["conv_h.weight"], y_h) + weights["conv_h.bias"][:, None]
    )
    a_w = sigmoid(
        np.einsum("cm,nml->ncl", weights["conv_w.weight"], y_w) + weights["conv_w.bias"][:, None]
    )
    out = x * a_w[:, :, None, :] * a_h[:, :, :, None]
    return out.transpose(0, 2, 3, 1)


def _attention_gate(t, weights, training, eps=1e-5):
    """The official AttentionGate on an (n, a, p, q) tensor: Z-pool over a, conv, BN, sigmoid."""
    z = np.stack([t.max(axis=1), t.mean(axis=1)], axis=-1)  # (n, p, q, 2)
    kernel = weights["conv.weight"]  # (1, 2, k, k)
    z = conv2d(z, kernel, padding=(kernel.shape[-1] - 1) // 2)
    bn = [weights[f"bn.{name}"] for name in ("weight", "bias", "running_mean", "running_var")]
    z = batch_norm(z, *bn, training=training, eps=eps)
    return t * sigmoid(z.transpose(0, 3, 1, 2))


def triplet_attention(x_nhwc, state, *, training, use_spatial=True):
    """Triplet Attention, NCHW with the official permutations; `state` named as the root
    `triplet_attention.py` names it."""
    x = np.asarray(x_nhwc, np.float64).transpose(0, 3, 1, 2)

    def branch(name):
        return {k[len(name) + 6 :]: v for k, v in state.items() if k.startswith(f"{name}.conv.")}

    out1 = _attention_gate(x.transpose(0, 2, 1, 3), branch("cw"), training).transpose(0, 2, 1, 3)
    out2 = _attention_gate(x.transpose(0, 3, 2, 1), branch("hc"), training).transpose(0, 3, 2, 1)
    if use_spatial:
        out = (out1 + out2 + _attention_gate(x, branch("hw"), training)) / 3
    else:
        out = (out1 + out2) / 2
    return out.transpose(0, 2, 3, 1)


def sge(x, weight, bias, groups):
    """SGE on NHWC `x`, from the official forward: per group, position-wise similarity to the
    group's mean feature, normalised over positions (unbiased std + 1e-5), affine, sigmoid."""
    x = np.asarray(x, np.float64)
    b, h, w, c = x.shape
    out = np.empty_like(x)
    size = c // groups
    for g in range(groups):
        part = x[..., g * size : (g + 1) * size].reshape(b, h * w, size)
        sim = (part * part.mean(axis=1, keepdims=True)).sum(axis=-1)  # (b, hw)
        mean, var = moments(sim, axis=1, unbiased=True, keepdims=True)
        t = (sim - mean) / (np.sqrt(var) + 1e-5) * weight[g] + bias[g]
        out[..., g * size : (g + 1) * size] = (part * sigmoid(t)[..., None]).reshape(b, h, w, size)
    return out


def simam(x, e_lambda):
    """The paper's closed-form energy on NHWC `x` (n = HW - 1, clamped to 1 on 1x1 maps)."""
    x = np.asarray(x, np.float64)
    mean, var = moments(x, axis=(1, 2), unbiased=True, keepdims=True)
    d = (x - mean) ** 2
    return x * sigmoid(d / (4 * (var + e_lambda)) + 0.5)

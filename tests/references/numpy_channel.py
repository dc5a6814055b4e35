"""Channel gates: SE (Hu et al., CVPR 2018), ECA (Wang et al., CVPR 2020), CBAM (Woo et al.,
ECCV 2018, channel gate then spatial gate) and Gather-Excite (Hu et al., NeurIPS 2018), each
from its paper and the code the layer follows (the SRM repository's SELayer and GELayer,
BangguWu/ECANet, Jongchan/attention-module, timm's local gather-excite)."""

import numpy as np

from references.numpy_common import (
    avg_pool2d,
    batch_norm,
    conv2d,
    depthwise_conv2d,
    resize,
    sigmoid,
)


def se(x, w1, b1, w2, b2):
    """SE on NHWC `x` with PyTorch-layout Linear weights (out, in)."""
    x = np.asarray(x, np.float64)
    pooled = x.mean(axis=(1, 2))
    hidden = np.maximum(pooled @ w1.T + b1, 0.0)
    return x * sigmoid(hidden @ w2.T + b2)[:, None, None, :]


def eca(x, weight):
    """ECA on NHWC `x`; `weight` is the official Conv1d's (k,) taps (a cross-correlation)."""
    x = np.asarray(x, np.float64)
    k = len(weight)
    pad = (k - 1) // 2
    pooled = x.mean(axis=(1, 2))
    padded = np.pad(pooled, [(0, 0), (pad, pad)])
    channels = x.shape[-1]
    mixed = sum(weight[j] * padded[:, j : j + channels] for j in range(k))
    return x * sigmoid(mixed)[:, None, None, :]


def cbam(x, state, *, pool_types=("avg", "max"), training=False, use_spatial=True):
    """CBAM on NHWC `x` from an official-layout PyTorch state dict (numpy arrays)."""
    x = np.asarray(x, np.float64)
    w1, b1 = state["ChannelGate.mlp.1.weight"], state["ChannelGate.mlp.1.bias"]
    w2, b2 = state["ChannelGate.mlp.3.weight"], state["ChannelGate.mlp.3.bias"]
    flat = x.reshape(x.shape[0], -1, x.shape[-1])
    peak = flat.max(axis=1)
    pools = {
        "avg": flat.mean(axis=1),
        "max": peak,
        "lp": np.sqrt((flat**2).sum(axis=1)),
        "lse": peak + np.log(np.exp(flat - peak[:, None, :]).sum(axis=1)),
    }
    logits = sum(np.maximum(pools[p] @ w1.T + b1, 0.0) @ w2.T + b2 for p in pool_types)
    x = x * sigmoid(logits)[:, None, None, :]
    if not use_spatial:
        return x
    # Official ChannelPool: [max; mean] over channels.
    pooled = np.stack([x.max(axis=-1), x.mean(axis=-1)], axis=-1)
    weight = state["SpatialGate.spatial.conv.weight"]  # (1, 2, k, k)
    z = conv2d(pooled, weight, padding=(weight.shape[-1] - 1) // 2)
    bn = [
        state[f"SpatialGate.spatial.bn.{name}"]
        for name in ("weight", "bias", "running_mean", "running_var")
    ]
    return x * sigmoid(batch_norm(z, *bn, training=training))


def gather_excite(layer, x, training):
    """GE on NHWC `x` with the weights held by `layer` (read, not computed, from it)."""
    x = np.asarray(x, np.float64)
    _, h, w, _ = x.shape
    if not layer.parametric:
        if layer.extent == "global":
            g = x.mean(axis=(1, 2), keepdims=True)
        else:
            e = layer.extent
            g = avg_pool2d(x, 2 * e - 1, e, e - 1)
    else:
        g = x
        n = len(layer.gather_convs)
        for i, (conv, bn) in enumerate(zip(layer.gather_convs, layer.gather_bns, strict=True)):
            kernel = np.asarray(conv.kernel, np.float64)[..., 0]
            if layer.extent == "global":
                g = depthwise_conv2d(g, kernel)
            else:
                g = depthwise_conv2d(g, kernel, stride=2, padding=1)
            g = batch_norm(g, *(np.asarray(v, np.float64) for v in bn.weights), training=training)
            if i < n - 1 or layer.use_mlp:
                g = np.maximum(g, 0)
    if layer.use_mlp:

        def dense(z, kernel, bias):  # a fully connected layer at every position (1x1 conv)
            return z @ np.asarray(kernel, np.float64) + np.asarray(bias, np.float64)

        hidden = np.maximum(dense(g, layer.fc1_kernel, layer.fc1_bias), 0)
        g = dense(hidden, layer.fc2_kernel, layer.fc2_bias)
    return x * resize(sigmoid(g), h, w, "nearest")

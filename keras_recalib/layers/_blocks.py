"""Building blocks that several papers share: the bottleneck MLP (SE, CBAM's channel gate,
Gather-Excite) and the Z-pool gate (CBAM's spatial gate, Triplet Attention's branches)."""

import keras

from keras_recalib import _validation as v
from keras_recalib import ops
from keras_recalib.layers._base import reduced_width


def _dense(z, kernel, bias):
    kernel = keras.ops.cast(kernel, z.dtype)
    if len(z.shape) == 2:
        y = keras.ops.matmul(z, kernel)
    else:
        # (batch, h, w, channels) maps: the same weights as a 1x1 convolution.
        y = keras.ops.conv(z, kernel[None, None], 1, "valid")
    return y + keras.ops.cast(bias, z.dtype)


class ExcitationMLP:
    """The bottleneck MLP of SE, CBAM's channel gate and Gather-Excite's excite step: fully
    connected C -> width (with bias), ReLU, fully connected width -> C (with bias).

    A mixin for a layer with `reduction`, `kernel_initializer` and `kernel_regularizer`
    attributes. The weights are plain variables `fc1_kernel` (C, width), `fc1_bias`,
    `fc2_kernel` (width, C), `fc2_bias` rather than `Dense` sublayers: the MLP mostly runs on a
    `(batch, channels)` vector, where a sublayer call costs more than its matmul.
    """

    def _build_excitation(self, channels, bottleneck_channels=None):
        width = bottleneck_channels or reduced_width(channels, self.reduction)
        for name, shape in (("fc1", (channels, width)), ("fc2", (width, channels))):
            kernel = self.add_weight(
                name=f"{name}_kernel",
                shape=shape,
                initializer=v.fresh_initializer(self.kernel_initializer),
                regularizer=self.kernel_regularizer,
            )
            bias = self.add_weight(name=f"{name}_bias", shape=shape[1:], initializer="zeros")
            setattr(self, f"{name}_kernel", kernel)
            setattr(self, f"{name}_bias", bias)

    def _excite(self, features):
        """Maps `(n, channels)` vectors or `(n, h, w, channels)` maps to gate logits of the
        same shape."""
        hidden = keras.ops.relu(_dense(features, self.fc1_kernel, self.fc1_bias))
        return _dense(hidden, self.fc2_kernel, self.fc2_bias)


def zpool_gate(maximum, mean, kernel, bn, training):
    """sigmoid(BN(conv([max; mean]))) of the two Z-pool maps (`ops.z_pool`), in their dtype; at
    inference (`training=False`) the normalisation is folded into the kernel and one bias, so
    no normalisation op runs."""
    if training:
        return keras.ops.sigmoid(bn(ops.zpool_conv(maximum, mean, kernel), training=True))
    scale, shift = ops.fold_batch_norm(bn, maximum.dtype)
    return keras.ops.sigmoid(ops.zpool_conv(maximum, mean, kernel * scale) + shift)

"""A direct TF2 translation of the seed article's TensorFlow `SRM_block` (the naive reference).

The seed (`/work/shared/seeds/001_09efecd95a29b00d.txt`) writes SRM for TF1:
reshape to (batch, HW, C), `tf.nn.moments` over HW, std = sqrt(var + 1e-5), concatenate to
(batch, 2, C), `tf.layers.conv1d(t, channels, kernel_size=2)` without bias, batch
normalisation (momentum 0.9, epsilon 1e-5), sigmoid, multiply. Its conv1d is a dense
2C -> C map that mixes channels (2C^2 weights), not the paper's channel-wise FC; it is
translated faithfully anyway, because the point of this baseline is the seed's cost, not its
semantics. It lives only in the benchmarks.
"""

import keras
import tensorflow as tf


class SeedSRMBlock(keras.layers.Layer):
    """`SRM_block(x, channels, use_bias=False, is_training)` of the seed, as a Keras layer."""

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.conv = keras.layers.Conv1D(channels, 2, strides=1, use_bias=False, name="conv1d")
        self.conv.build((None, 2, channels))
        self.bn = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="bn")
        self.bn.build((None, 1, channels))

    def call(self, x, training=None):
        shape = tf.shape(x)
        channels = x.shape[-1]
        x = tf.reshape(x, [shape[0], -1, channels])  # [bs, h*w, c]
        mean, var = tf.nn.moments(x, axes=[1], keepdims=True)  # [bs, 1, c]
        std = tf.sqrt(var + 1e-5)
        t = tf.concat([mean, std], axis=1)  # [bs, 2, c]
        z = self.conv(t)  # [bs, 1, c]
        z = self.bn(z, training=training)
        g = tf.sigmoid(z)
        return tf.reshape(x * g, shape)

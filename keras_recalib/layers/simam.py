"""SimAM: a simple, parameter-free attention module.

Yang, Zhang, Li and Xie, "SimAM: A Simple, Parameter-Free Attention Module for Convolutional
Neural Networks", ICML 2021 (https://proceedings.mlr.press/v139/yang21o.html). Semantics follow
the official code, ZjjConan/SimAM (`simam_module`).
"""

import keras

from keras_recalib import _validation as v
from keras_recalib import ops
from keras_recalib.layers._base import RecalibrationLayer

# The smallest regulariser accepted: far above float32's smallest subnormal (~1.4e-45).
MIN_LAMBDA = 1e-10


@keras.saving.register_keras_serializable(package="keras_recalib")
class SimAM(RecalibrationLayer):
    """SimAM: a per-element gate from each activation's energy; no parameters.

    For every channel, with mu the spatial mean and d = (x - mu)^2, the inverse of the
    minimal energy of each position is y = d / (4 * (sum(d) / n + e_lambda)) + 0.5 with
    n = height * width - 1 (the official code's unbiased variance), and the output is
    x * sigmoid(y). Positions that stand out from their channel's mean get larger gates;
    since y >= 0.5 every gate lies in [sigmoid(0.5), 1) ~ [0.62, 1).

    On a 1x1 map n = 0 makes the official code compute 0/0 (NaN); here n is clamped to 1, so
    d = 0 gives y = 0.5 and the output x * sigmoid(0.5) stays finite.

    Args:
        e_lambda: float >= 1e-10, the energy function's regulariser lambda. It keeps the gate
            finite on a constant map (zero variance, so y = 0 / (4 * lambda)); a smaller value
            can vanish in float32 (values below ~1e-45 round to 0) and give 0/0 = NaN there.
            Defaults to `1e-4`, the official module's default (used for its CIFAR runs; the
            official ImageNet checkpoints were trained with 0.1).

    Input shape:
        `(batch, height, width, channels)`. Integer inputs are cast to the compute dtype.

    Output shape:
        Same as the input, in the layer's compute dtype.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = keras_recalib.SimAM()(x)

    Reference:
        https://proceedings.mlr.press/v139/yang21o.html
    """

    def __init__(self, e_lambda: float = 1e-4, **kwargs) -> None:
        super().__init__(**kwargs)
        self.e_lambda = v.check_float("e_lambda", e_lambda)
        if self.e_lambda < MIN_LAMBDA:
            raise ValueError(
                f"Argument `e_lambda` must be >= {MIN_LAMBDA}: lambda is what keeps a constant "
                "map (zero variance) finite, and a smaller value can vanish in float32 (below "
                f"~1e-45 it rounds to 0) and give 0/0 = NaN. Received: e_lambda={e_lambda!r}"
            )

    def build(self, input_shape):
        self._check_input_shape(input_shape)

    def _gate(self, inputs):
        """The (batch, height, width, channels) gate, in the statistics dtype."""
        # Squared deviations of large float16 activations overflow: computed in float32.
        x = keras.ops.cast(self._prepare_input(inputs), self._stats_dtype)
        # sigmoid(d / (4 (sum(d) / n + e_lambda)) + 1/2), d = (x - mean)^2, n = max(HW - 1, 1).
        return ops.energy_gate(x, self.e_lambda)

    def call(self, inputs):
        x = self._prepare_input(inputs)
        return x * keras.ops.cast(self._gate(x), x.dtype)

    def gates(self, inputs, training: bool = False) -> dict:
        return {"element": self._gate(inputs)}

    def get_config(self):
        config = super().get_config()
        config.update({"e_lambda": self.e_lambda})
        return config

"""The base every recalibration layer derives from: NHWC checks and dtype rules."""

import keras
import tensorflow as tf


class RecalibrationLayer(keras.layers.Layer):
    """Shared behaviour of the package's layers.

    - NHWC only: constructing a layer while `keras.config.image_data_format()` is
      `"channels_first"` raises a `ValueError`.
    - `build` requires a rank-4 input with a known channel count.
    - Integer inputs (e.g. `uint8` images) are cast to the layer's compute dtype.
    - Statistics run in float32 when the compute dtype is float16/bfloat16 (see
      `_stats_dtype`), in the compute dtype otherwise (float32 or float64).

    `is_gate` says whether the output is the input times gates in [0, 1] (True for every
    module except the self-calibrated convolution); `keras_recalib.inspect` relies on it.
    """

    is_gate = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        data_format = keras.config.image_data_format()
        if data_format != "channels_last":
            raise ValueError(
                f"{type(self).__name__} supports only channels-last (NHWC) data, but "
                "keras.config.image_data_format() is 'channels_first'. Call "
                "keras.config.set_image_data_format('channels_last') and transpose inputs "
                f"to (batch, height, width, channels). Received: image_data_format={data_format}"
            )

    def _check_input_shape(self, input_shape):
        """Validates a (batch, height, width, channels) shape; returns the channel count."""
        shape = tuple(input_shape)
        if len(shape) != 4:
            raise ValueError(
                f"{type(self).__name__} expects a rank-4 input (batch, height, width, channels). "
                f"Received: input_shape={shape}"
            )
        channels = shape[-1]
        if channels is None:
            raise ValueError(
                f"{type(self).__name__} needs a known channel count (the last axis). "
                f"Received: input_shape={shape}"
            )
        return int(channels)

    @property
    def _stats_dtype(self):
        # float16 overflows on squares above ~256 and bfloat16 loses precision in long sums.
        if self.compute_dtype in ("float16", "bfloat16"):
            return "float32"
        return self.compute_dtype

    def _prepare_input(self, inputs):
        inputs = tf.convert_to_tensor(inputs)
        if not inputs.dtype.is_floating:
            inputs = tf.cast(inputs, self.compute_dtype)
        return inputs

    @classmethod
    def from_config(cls, config):
        try:
            return super().from_config(config)
        except TypeError as error:
            # Keras wraps constructor errors in a TypeError; surface the argument check itself.
            if isinstance(error.__context__, ValueError):
                raise error.__context__ from None
            raise

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


def reduced_width(channels, reduction, min_channels=1):
    """Bottleneck width of the excitation MLPs: channels // reduction, at least `min_channels`.

    Shared by SE, CBAM, Gather-Excite and Coordinate Attention so their widths agree with the
    official code (`channel // reduction`; Coordinate Attention uses min_channels=8).
    """
    return max(int(min_channels), int(channels) // int(reduction))

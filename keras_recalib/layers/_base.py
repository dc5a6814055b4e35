"""The base every recalibration layer derives from: NHWC checks, dtype rules, the optional
batch normalisation's arguments, and the one gate API."""

import keras

from keras_recalib import _validation as v


class RecalibrationLayer(keras.layers.Layer):
    """Shared behaviour of the package's layers.

    - NHWC only: constructing a layer while `keras.config.image_data_format()` is
      `"channels_first"` raises a `ValueError`.
    - `build` requires a rank-4 input with a known channel count.
    - Integer inputs (e.g. `uint8` images) are cast to the layer's compute dtype.
    - Statistics run in float32 when the compute dtype is float16/bfloat16 (see
      `_stats_dtype`), in the compute dtype otherwise (float32 or float64).

    - Gates: `gates(inputs)` returns the gates the layer applies, by name, each broadcastable
      against the input; `keras_recalib.inspect` and users read them through it alone.
    - Batch normalisation (for layers that have one): `synchronized`, `momentum` and
      `norm_epsilon` are checked by `_set_batch_norm_arguments` and every normalisation is
      made by `_make_batch_norm`, in the statistics dtype.

    `is_gate` says whether the output is the input times gates in [0, 1] (True for every
    module except the self-calibrated convolution); `gates_combined_by` says how: `"product"`,
    the input times every gate of `gates()` (most layers), or `"mean"`, the mean of the input
    times each gate (Triplet Attention's branches).
    """

    is_gate = True
    gates_combined_by = "product"

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
        inputs = keras.ops.convert_to_tensor(inputs)
        if not keras.backend.is_float_dtype(inputs.dtype):
            inputs = keras.ops.cast(inputs, self.compute_dtype)
        return inputs

    def gates(self, inputs, training: bool = False) -> dict:
        """The gates the layer applies to `inputs`, by name, in the statistics dtype.

        Each gate lies in [0, 1] and broadcasts against the `(batch, height, width, channels)`
        input: `(batch, 1, 1, channels)` for a channel gate, `(batch, height, width, 1)` for a
        spatial one, and so on; a layer applying several gates returns them in the order it
        applies them. A layer that is not a gate returns an empty dict.
        """
        if not self.is_gate:
            return {}
        raise NotImplementedError(f"{type(self).__name__} does not implement gates()")

    def gate_details(self, inputs) -> dict:
        """Layer-specific quantities behind the gates on `inputs` (SRM: its style features and
        effective weights), by name, as arrays; an empty dict for most layers."""
        return {}

    # --- the optional batch normalisation ------------------------------------------------

    def _set_batch_norm_arguments(self, synchronized, momentum, norm_epsilon):
        self.synchronized = v.check_bool("synchronized", synchronized)
        self.momentum = v.check_float("momentum", momentum, minimum=0.0, maximum=1.0)
        self.norm_epsilon = v.check_float(
            "norm_epsilon", norm_epsilon, minimum=0.0, min_inclusive=False
        )

    def _batch_norm_config(self):
        return {
            "synchronized": self.synchronized,
            "momentum": self.momentum,
            "norm_epsilon": self.norm_epsilon,
        }

    def _make_batch_norm(self, name, input_shape, gamma_initializer=None):
        """A BatchNormalization over the last axis with the layer's arguments, built for
        `input_shape`; it runs in the statistics dtype (float32 under mixed precision).

        Synchronized statistics need TensorFlow's `tf.distribute`: on another backend they are
        refused here, when the normalisation is made, so that an argument that has no effect
        anyway (`use_batch_norm=False`) is reported as such by the constructor.
        """
        backend = keras.backend.backend()
        if self.synchronized and backend != "tensorflow":
            raise ValueError(
                f"Argument `synchronized` of {type(self).__name__} synchronizes batch statistics "
                f"across the replicas of TensorFlow's `tf.distribute`, which the {backend!r} "
                "backend does not have. Pass `synchronized=False` (under JAX's "
                "`keras.distribution`, the batch statistics are already global), or use "
                f"KERAS_BACKEND=tensorflow. Received: synchronized={self.synchronized!r}"
            )
        extra = {}
        if gamma_initializer is not None:
            extra["gamma_initializer"] = v.fresh_initializer(gamma_initializer)
        bn = keras.layers.BatchNormalization(
            axis=-1,
            momentum=self.momentum,
            epsilon=self.norm_epsilon,
            synchronized=self.synchronized,
            dtype=self._stats_dtype,
            name=name,
            **extra,
        )
        bn.build(input_shape)
        return bn

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

"""Gather-Excite: context gathered over a spatial extent, redistributed as gates.

Hu, Shen, Albanie, Sun and Vedaldi, "Gather-Excite: Exploiting Feature Context in Convolutional
Neural Networks", NeurIPS 2018 (https://arxiv.org/abs/1810.12348). The official code,
hujie-frank/GENet, holds Caffe prototxts for the global variants only (`RN50-GEPF`: GE-θ⁻,
`RN50-GEP`: GE-θ, `RN50-GEPP`: GE-θ⁺); the global GE-θ also follows `GELayer` of
hyunjaelee410/style-based-recalibration-module (`models/recalibration_modules.py`), and the
local extents follow timm (`timm/layers/gather_excite.py`).
"""

import math
import numbers

import keras

from keras_recalib import _validation as v
from keras_recalib import ops
from keras_recalib._conventions import torch_padding
from keras_recalib._validation import InitializerLike, RegularizerLike
from keras_recalib.layers._base import RecalibrationLayer
from keras_recalib.layers._blocks import ExcitationMLP

# The local gather's depthwise convolutions (timm): 3x3, stride 2, PyTorch padding 1.
_LOCAL_KERNEL, _LOCAL_STRIDE = 3, 2


def _check_extent(extent):
    if isinstance(extent, str) and extent.lower() == "global":
        return "global"
    if (
        not isinstance(extent, bool)
        and isinstance(extent, numbers.Integral)
        and extent >= 2
        and extent & (extent - 1) == 0
    ):
        return int(extent)
    raise ValueError(
        "Argument `extent` must be 'global' or a power of 2 >= 2 (2, 4, 8, ...). "
        f"Received: extent={extent!r}"
    )


@keras.saving.register_keras_serializable(package="keras_recalib")
class GatherExcite(ExcitationMLP, RecalibrationLayer):
    """Gather-Excite (GE): gates from context gathered over a spatial extent.

    The gather step summarises each channel over a neighbourhood: the whole map
    (`extent="global"`) or windows of extent e, giving a map e times smaller. The excite step
    turns that context into gates with a sigmoid, upsamples them to the input size (nearest
    neighbour, like PyTorch's `F.interpolate`) and multiplies the input by them.

    - GE-θ⁻ (`parametric=False`, the default): parameter-free average pooling. Global: the
      spatial mean. Extent e: average pooling with kernel 2e - 1, stride e, padding e - 1 and
      padded positions excluded from the average (timm's choice), which gives ceil(H / e) rows.
    - GE-θ (`parametric=True`): depthwise convolutions followed by batch normalisation.
      Global: one depthwise convolution as large as the feature map (no padding, so a 1x1
      output), as in the official `RN50-GEP` prototxt and the SRM repository's `GELayer`; this
      needs a static height and width. Extent e: log2(e) depthwise 3x3 stride-2 convolutions
      (padding 1), each followed by batch normalisation, with ReLU between them (timm).
    - GE-θ⁺ (`parametric=True, use_mlp=True`): GE-θ followed by ReLU and an SE-like bottleneck
      (1x1 convolutions C -> C // reduction -> C with biases and a ReLU between: SE's MLP at
      every position of the context), as in the official `RN50-GEPP` prototxt. timm feeds the
      last normalisation to the MLP without the ReLU. `use_mlp=True` with `parametric=False`
      gives timm's SE-like GE variant (for the global extent, Squeeze-and-Excitation).

    Where the sources differ: the gather convolutions have no bias (official prototxts, timm);
    the SRM repository's `GELayer` has one, which the batch normalisation makes redundant:
    `load_torch_weights` folds it into the moving mean, so outputs match exactly in both modes.
    The official MLP initialises its kernels with a Gaussian of std 0.01 and the gather
    convolutions with MSRA (He) fillers; here `kernel_initializer` (He normal) covers both.

    Arguments that only act on a part the configuration lacks must keep their defaults (a
    `ValueError` otherwise): `synchronized`, `momentum` and `norm_epsilon` need
    `parametric=True`, `reduction` needs `use_mlp=True`, and `kernel_initializer` and
    `kernel_regularizer` need either.

    Args:
        extent: `"global"` or a power of 2 >= 2 (any integer type), the gather extent ratio.
            Defaults to `"global"`.
        parametric: bool, learn the gather (GE-θ) instead of average pooling (GE-θ⁻).
            Defaults to `False`.
        use_mlp: bool, add the SE-like bottleneck to the excite step (GE-θ⁺ when parametric).
            Defaults to `False`.
        reduction: int, bottleneck reduction of the MLP (width `channels // reduction`, at
            least 1); only with `use_mlp=True`. Defaults to `16`.
        synchronized: bool, synchronise the batch statistics of the gather's normalisation
            across replicas under `tf.distribute`; only with `parametric=True`. Defaults to
            `False`.
        momentum: float, moving-average momentum of the normalisation in Keras' convention
            (PyTorch's 0.1 is Keras' 0.9); only with `parametric=True`. Defaults to `0.9`.
        norm_epsilon: float, epsilon of the normalisation (PyTorch's default); only with
            `parametric=True`. Defaults to `1e-5`.
        kernel_initializer: initializer of the gather and MLP kernels (not `None`). Defaults
            to `"he_normal"`.
        kernel_regularizer: optional regularizer of those kernels. Defaults to `None`.

    Input shape:
        `(batch, height, width, channels)`; height and width must be static for a parametric
        global gather, which only accepts inputs of the size it was built for. Integer inputs
        are cast to the compute dtype.

    Output shape:
        Same as the input, in the layer's compute dtype.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = keras_recalib.GatherExcite(extent=4)(x)
    >>> x = keras.Input((14, 14, 256))
    >>> y = keras_recalib.GatherExcite(parametric=True, use_mlp=True)(x)

    Reference:
        https://arxiv.org/abs/1810.12348
    """

    def __init__(
        self,
        extent: int | str = "global",
        parametric: bool = False,
        use_mlp: bool = False,
        reduction: int = 16,
        synchronized: bool = False,
        momentum: float = 0.9,
        norm_epsilon: float = 1e-5,
        kernel_initializer: InitializerLike = "he_normal",
        kernel_regularizer: RegularizerLike | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.extent = _check_extent(extent)
        self.parametric = v.check_bool("parametric", parametric)
        self.use_mlp = v.check_bool("use_mlp", use_mlp)
        self.reduction = v.check_int("reduction", reduction, minimum=1)
        self._set_batch_norm_arguments(synchronized, momentum, norm_epsilon)
        self.kernel_initializer = v.get_initializer("kernel_initializer", kernel_initializer)
        self.kernel_regularizer = v.get_regularizer("kernel_regularizer", kernel_regularizer)
        if not self.parametric:
            v.refuse_inactive(
                GatherExcite,
                "parametric=False",
                synchronized=synchronized,
                momentum=momentum,
                norm_epsilon=norm_epsilon,
            )
        if not self.use_mlp:
            v.refuse_inactive(GatherExcite, "use_mlp=False", reduction=reduction)
        if not (self.parametric or self.use_mlp):
            v.refuse_inactive(
                GatherExcite,
                "parametric=False and use_mlp=False",
                kernel_initializer=kernel_initializer,
                kernel_regularizer=kernel_regularizer,
            )

    @property
    def _global(self):
        return self.extent == "global"

    def build(self, input_shape):
        channels = self._check_input_shape(input_shape)
        self.gather_size = None
        self.gather_convs = []
        self.gather_bns = []
        if self.parametric:
            if self._global:
                height, width = tuple(input_shape)[1:3]
                if height is None or width is None:
                    raise ValueError(
                        "GatherExcite with a parametric global gather convolves with a kernel "
                        "as large as the feature map, so it needs a static spatial size "
                        "(height and width); use an integer `extent` for inputs of varying "
                        f"size. Received: input_shape={tuple(input_shape)}"
                    )
                self.gather_size = (int(height), int(width))
                kernels, strides = [self.gather_size], 1
                self._gather_pad, padding = 0, "valid"
            else:
                kernels = [(_LOCAL_KERNEL, _LOCAL_KERNEL)] * int(math.log2(self.extent))
                strides = _LOCAL_STRIDE
                self._gather_pad, padding = torch_padding(_LOCAL_KERNEL, _LOCAL_STRIDE)
            for i, kernel in enumerate(kernels, start=1):
                suffix = "" if self._global else str(i)
                conv = keras.layers.DepthwiseConv2D(
                    kernel,
                    strides=strides,
                    padding=padding,
                    use_bias=False,
                    depthwise_initializer=v.fresh_initializer(self.kernel_initializer),
                    depthwise_regularizer=self.kernel_regularizer,
                    dtype=self._stats_dtype,
                    name=f"gather_conv{suffix}",
                )
                conv.build((None, *(self.gather_size or (None, None)), channels))
                bn = self._make_batch_norm(f"gather_bn{suffix}", (None, None, None, channels))
                self.gather_convs.append(conv)
                self.gather_bns.append(bn)
        if self.use_mlp:
            self._build_excitation(channels)

    def _check_spatial_size(self, x):
        if self.gather_size is not None and tuple(x.shape[1:3]) != self.gather_size:
            raise ValueError(
                f"This GatherExcite was built for a spatial size (height, width) of "
                f"{self.gather_size}: its global gather convolution covers exactly that size. "
                f"Received: input_shape={tuple(x.shape)}"
            )

    def gather(self, inputs, training=False):
        """The gathered context: (batch, 1, 1, channels) for the global extent, else
        (batch, ceil(height / extent), ceil(width / extent), channels); statistics dtype."""
        x = keras.ops.cast(self._prepare_input(inputs), self._stats_dtype)
        if not self.parametric:
            if self._global:
                return keras.ops.mean(x, axis=(1, 2), keepdims=True)
            return self._average_pool(x)
        self._check_spatial_size(x)
        for i, (conv, bn) in enumerate(zip(self.gather_convs, self.gather_bns, strict=True)):
            x = bn(conv(ops.pad_spatial(x, self._gather_pad)), training=training)
            if i < len(self.gather_convs) - 1 or self.use_mlp:
                x = keras.ops.relu(x)
        return x

    def _average_pool(self, x):
        # PyTorch's avg_pool2d(kernel 2e-1, stride e, padding e-1, count_include_pad=False):
        # TF's "SAME" padding is asymmetric, so pad explicitly and divide by the valid count.
        e = self.extent
        kernel = 2 * e - 1
        shape = keras.ops.shape(x)
        ones = keras.ops.ones((1, shape[1], shape[2], 1), x.dtype)
        sums = keras.ops.average_pool(ops.pad_spatial(x, e - 1), kernel, e, "valid")
        counts = keras.ops.average_pool(ops.pad_spatial(ones, e - 1), kernel, e, "valid")
        return sums / counts

    def _gate(self, inputs, training=False):
        """The gate in [0, 1] before upsampling (shape of `gather`), statistics dtype."""
        context = self.gather(inputs, training=training)
        if self.use_mlp:
            context = self._excite(context)
        return keras.ops.sigmoid(context)

    def call(self, inputs, training=None):
        x = self._prepare_input(inputs)
        gate = self._gate(x, training=bool(training))
        if self._global:
            return ops.channel_scale(
                x, keras.ops.cast(keras.ops.reshape(gate, [-1, x.shape[-1]]), x.dtype)
            )
        return x * keras.ops.cast(self._upsample(gate, x), x.dtype)

    def _upsample(self, gate, x):
        # Nearest-neighbour, as PyTorch's default `F.interpolate`.
        return ops.resize(gate, ops.axis_size(x, 1), ops.axis_size(x, 2))

    def gates(self, inputs, training: bool = False) -> dict:
        """`{"channel": (batch, 1, 1, channels)}` for the global extent, else `{"local":
        (batch, height, width, channels)}`, the gathered gate upsampled to the input."""
        x = self._prepare_input(inputs)
        gate = self._gate(x, training=training)
        if self._global:
            return {"channel": gate}
        return {"local": self._upsample(gate, x)}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "extent": self.extent,
                "parametric": self.parametric,
                "use_mlp": self.use_mlp,
                "reduction": self.reduction,
                **self._batch_norm_config(),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            }
        )
        return config

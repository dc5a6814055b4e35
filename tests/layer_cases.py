"""The contract's entries: one `LayerCase` per layer configuration.

A new layer joins the whole contract (tests/test_contract.py) by appending one entry here.
"""

import dataclasses

import keras_recalib as kr


@dataclasses.dataclass(frozen=True)
class LayerCase:
    """What the contract needs to know about a layer configuration.

    Attributes:
        id: test id.
        cls: the layer class.
        kwargs: constructor arguments of this configuration.
        input_shape: (batch, height, width, channels) used by the fixed-shape checks.
        gated: the output is the input times gates in [0, 1], so |output| <= |input|
            elementwise (checked by fuzzing and used for the float16 range check).
        dynamic_spatial: works with unknown height and width; if False, an unknown spatial
            size must raise a clear ValueError instead.
        fuzz_channels: channel counts the fuzzer draws from.
        fuzz_kwargs: argument name -> values the fuzzer draws from (merged over `kwargs`).
        bad_kwargs: (arguments, name of the argument the error must name) pairs that must be
            refused with a ValueError at construction and from a config dict.
    """

    id: str
    cls: type
    kwargs: dict
    input_shape: tuple
    gated: bool = True
    dynamic_spatial: bool = True
    fuzz_channels: tuple = (8,)
    fuzz_kwargs: dict = dataclasses.field(default_factory=dict)
    bad_kwargs: tuple = ()

    def __str__(self):
        return self.id


CASES = [
    LayerCase(
        id="srm",
        cls=kr.StyleRecalibration,
        kwargs={},
        input_shape=(3, 5, 6, 8),
        fuzz_channels=(1, 3, 8, 16),
        fuzz_kwargs={
            "epsilon": [0.0, 1e-5],
            "unbiased": [False, True],
            "use_batch_norm": [True, False],
        },
        bad_kwargs=(
            ({"epsilon": -1.0}, "epsilon"),
            ({"epsilon": "small"}, "epsilon"),
            ({"epsilon": float("nan")}, "epsilon"),
            ({"unbiased": "yes"}, "unbiased"),
            ({"use_batch_norm": 1}, "use_batch_norm"),
            ({"synchronized": None}, "synchronized"),
            ({"momentum": 1.5}, "momentum"),
            ({"norm_epsilon": 0.0}, "norm_epsilon"),
            ({"kernel_initializer": "no_such_initializer"}, "kernel_initializer"),
            ({"kernel_initializer": None}, "kernel_initializer"),
            ({"kernel_regularizer": "no_such_regularizer"}, "kernel_regularizer"),
            ({"use_batch_norm": False, "synchronized": True}, "synchronized"),
            ({"use_batch_norm": False, "momentum": 0.5}, "momentum"),
        ),
    ),
    LayerCase(
        id="srm_unbiased_noeps_nobn",
        cls=kr.StyleRecalibration,
        kwargs={"unbiased": True, "epsilon": 0.0, "use_batch_norm": False},
        input_shape=(2, 4, 4, 6),
    ),
    LayerCase(
        id="se",
        cls=kr.SqueezeExcitation,
        kwargs={"reduction": 4},
        input_shape=(2, 5, 6, 16),
        fuzz_channels=(1, 3, 8, 16),
        fuzz_kwargs={"reduction": [1, 4, 16]},
        bad_kwargs=(
            ({"reduction": 0}, "reduction"),
            # `kwargs` sets reduction=4, which an explicit width would leave without effect.
            ({"bottleneck_channels": 2}, "reduction"),
            ({"reduction": 2.5}, "reduction"),
            ({"reduction": "4"}, "reduction"),
            ({"bottleneck_channels": 0}, "bottleneck_channels"),
            ({"kernel_initializer": "no_such_initializer"}, "kernel_initializer"),
            ({"kernel_initializer": None}, "kernel_initializer"),
            ({"kernel_regularizer": "no_such_regularizer"}, "kernel_regularizer"),
        ),
    ),
    LayerCase(
        id="eca",
        cls=kr.EfficientChannelAttention,
        kwargs={},
        input_shape=(2, 5, 6, 16),
        fuzz_channels=(1, 2, 3, 8, 16, 64),
        # gamma and beta act only on the adaptive size (kernel_size=None); explicit sizes are
        # covered by tests/test_eca.py.
        fuzz_kwargs={"gamma": [2.0, 1.0], "beta": [1.0, 0.0]},
        bad_kwargs=(
            ({"kernel_size": 4}, "kernel_size"),
            ({"kernel_size": 0}, "kernel_size"),
            ({"kernel_size": -3}, "kernel_size"),
            ({"kernel_size": 3.0}, "kernel_size"),
            ({"gamma": 0.0}, "gamma"),
            ({"gamma": "two"}, "gamma"),
            ({"beta": float("nan")}, "beta"),
            ({"kernel_size": 3, "gamma": 1.0}, "gamma"),
            ({"kernel_initializer": "no_such_initializer"}, "kernel_initializer"),
            ({"kernel_initializer": None}, "kernel_initializer"),
            ({"kernel_regularizer": "no_such_regularizer"}, "kernel_regularizer"),
        ),
    ),
    LayerCase(
        id="cbam",
        cls=kr.ConvBlockAttention,
        kwargs={"reduction": 4},
        input_shape=(2, 5, 6, 16),
        fuzz_channels=(1, 3, 8, 16),
        fuzz_kwargs={
            "reduction": [2, 4, 16],
            # Not `use_spatial`: with False, a non-default spatial_kernel_size is refused.
            "spatial_kernel_size": [1, 3, 7],
            "pool_types": [["avg", "max"], ["avg"], ["max", "lp", "lse"]],
        },
        bad_kwargs=(
            ({"reduction": 0}, "reduction"),
            ({"bottleneck_channels": -1}, "bottleneck_channels"),
            ({"bottleneck_channels": 2}, "reduction"),  # reduction=4 would do nothing
            ({"spatial_kernel_size": 6}, "spatial_kernel_size"),
            ({"spatial_kernel_size": 0}, "spatial_kernel_size"),
            ({"pool_types": ["avg", "median"]}, "pool_types"),
            ({"pool_types": []}, "pool_types"),
            ({"pool_types": "avg"}, "pool_types"),
            ({"pool_types": ["avg", "avg"]}, "pool_types"),
            ({"use_spatial": "yes"}, "use_spatial"),
            ({"synchronized": None}, "synchronized"),
            ({"momentum": 1.5}, "momentum"),
            ({"norm_epsilon": 0.0}, "norm_epsilon"),
            ({"spatial_gamma_initializer": "no_such_init"}, "spatial_gamma_initializer"),
            ({"spatial_gamma_initializer": None}, "spatial_gamma_initializer"),
            ({"kernel_initializer": None}, "kernel_initializer"),
            ({"kernel_regularizer": "no_such_regularizer"}, "kernel_regularizer"),
            ({"use_spatial": False, "spatial_kernel_size": 3}, "spatial_kernel_size"),
            ({"use_spatial": False, "synchronized": True}, "synchronized"),
        ),
    ),
    LayerCase(
        id="cbam_all_pools",
        cls=kr.ConvBlockAttention,
        kwargs={"bottleneck_channels": 3, "pool_types": ["avg", "max", "lp", "lse"]},
        input_shape=(2, 4, 5, 8),
    ),
    LayerCase(
        id="scconv",
        cls=kr.SelfCalibratedConv2D,
        kwargs={},
        # 8x9 pools to 2x2 (not 1x1, where BN over a batch of 2 would leave k2 no gradient).
        input_shape=(2, 8, 9, 4),
        gated=False,
        fuzz_channels=(2, 4, 8),
        fuzz_kwargs={
            "filters": [None, 2, 6],
            "pooling_r": [1, 2, 4],
            "strides": [1, 2],
            "interpolation": ["nearest", "bilinear"],
        },
        bad_kwargs=(
            ({"filters": 3}, "filters"),
            ({"filters": 0}, "filters"),
            ({"filters": "8"}, "filters"),
            ({"pooling_r": 0}, "pooling_r"),
            ({"strides": 0}, "strides"),
            ({"strides": 1.5}, "strides"),
            ({"interpolation": "bicubic"}, "interpolation"),
            ({"synchronized": None}, "synchronized"),
            ({"momentum": 1.5}, "momentum"),
            ({"norm_epsilon": 0.0}, "norm_epsilon"),
            ({"kernel_initializer": "no_such_initializer"}, "kernel_initializer"),
            ({"kernel_regularizer": "no_such_regularizer"}, "kernel_regularizer"),
        ),
    ),
    LayerCase(
        id="scconv_s2_f6_bilinear",
        cls=kr.SelfCalibratedConv2D,
        kwargs={"filters": 6, "strides": 2, "pooling_r": 2, "interpolation": "bilinear"},
        input_shape=(2, 6, 7, 4),
        gated=False,
    ),
    LayerCase(
        id="ca",
        cls=kr.CoordinateAttention,
        kwargs={},
        input_shape=(2, 5, 6, 8),
        fuzz_channels=(1, 3, 8, 16),
        fuzz_kwargs={"reduction": [1, 4, 32], "min_channels": [1, 8]},
        bad_kwargs=(
            ({"reduction": 0}, "reduction"),
            ({"reduction": 2.5}, "reduction"),
            ({"min_channels": 0}, "min_channels"),
            ({"synchronized": None}, "synchronized"),
            ({"momentum": 1.5}, "momentum"),
            ({"norm_epsilon": 0.0}, "norm_epsilon"),
            ({"kernel_initializer": "no_such_initializer"}, "kernel_initializer"),
            ({"kernel_regularizer": "no_such_regularizer"}, "kernel_regularizer"),
        ),
    ),
    LayerCase(
        id="triplet",
        cls=kr.TripletAttention,
        kwargs={},
        input_shape=(2, 5, 6, 8),
        fuzz_channels=(1, 3, 8, 16),
        fuzz_kwargs={"kernel_size": [1, 3, 7], "use_spatial": [True, False]},
        bad_kwargs=(
            ({"kernel_size": 4}, "kernel_size"),
            ({"kernel_size": 0}, "kernel_size"),
            ({"kernel_size": 3.0}, "kernel_size"),
            ({"use_spatial": "yes"}, "use_spatial"),
            ({"synchronized": None}, "synchronized"),
            ({"momentum": -0.1}, "momentum"),
            ({"norm_epsilon": 0.0}, "norm_epsilon"),
            ({"spatial_gamma_initializer": "no_such_init"}, "spatial_gamma_initializer"),
            ({"spatial_gamma_initializer": None}, "spatial_gamma_initializer"),
            (
                {"use_spatial": False, "spatial_gamma_initializer": "ones"},
                "spatial_gamma_initializer",
            ),
            ({"kernel_initializer": "no_such_initializer"}, "kernel_initializer"),
            ({"kernel_regularizer": "no_such_regularizer"}, "kernel_regularizer"),
        ),
    ),
    LayerCase(
        id="sge",
        cls=kr.SpatialGroupEnhance,
        kwargs={"groups": 4},
        input_shape=(2, 5, 6, 8),
        fuzz_channels=(4, 8, 16),
        fuzz_kwargs={"groups": [1, 2, 4]},
        bad_kwargs=(
            ({"groups": 0}, "groups"),
            ({"groups": 2.5}, "groups"),
            ({"groups": "4"}, "groups"),
            ({"weight_initializer": "no_such_initializer"}, "weight_initializer"),
            ({"weight_initializer": None}, "weight_initializer"),
            ({"bias_initializer": "no_such_initializer"}, "bias_initializer"),
            ({"bias_initializer": None}, "bias_initializer"),
            ({"weight_regularizer": "no_such_regularizer"}, "weight_regularizer"),
            ({"bias_regularizer": "no_such_regularizer"}, "bias_regularizer"),
        ),
    ),
    LayerCase(
        id="simam",
        cls=kr.SimAM,
        kwargs={},
        input_shape=(2, 5, 6, 8),
        fuzz_channels=(1, 3, 8),
        fuzz_kwargs={"e_lambda": [1e-4, 0.1]},
        bad_kwargs=(
            ({"e_lambda": 0.0}, "e_lambda"),
            ({"e_lambda": 1e-12}, "e_lambda"),
            ({"e_lambda": -1.0}, "e_lambda"),
            ({"e_lambda": "small"}, "e_lambda"),
            ({"e_lambda": float("nan")}, "e_lambda"),
        ),
    ),
    LayerCase(
        id="ge",
        cls=kr.GatherExcite,
        kwargs={},
        input_shape=(2, 5, 6, 8),
        fuzz_channels=(1, 3, 8, 16),
        fuzz_kwargs={
            "extent": ["global", 2, 4, 8],
            "parametric": [False, True],
            "use_mlp": [False, True],
        },
        bad_kwargs=(
            ({"extent": 3}, "extent"),
            ({"extent": 1}, "extent"),
            ({"extent": 2.0}, "extent"),
            ({"extent": "local"}, "extent"),
            ({"parametric": "yes"}, "parametric"),
            ({"use_mlp": 1}, "use_mlp"),
            ({"reduction": 0}, "reduction"),
            ({"synchronized": None}, "synchronized"),
            ({"momentum": 1.5}, "momentum"),
            ({"norm_epsilon": 0.0}, "norm_epsilon"),
            ({"kernel_initializer": "no_such_initializer"}, "kernel_initializer"),
            ({"kernel_initializer": None}, "kernel_initializer"),
            ({"kernel_regularizer": "no_such_regularizer"}, "kernel_regularizer"),
            ({"synchronized": True}, "synchronized"),
            ({"reduction": 4}, "reduction"),
        ),
    ),
    LayerCase(
        id="ge_theta_plus_e2",
        cls=kr.GatherExcite,
        kwargs={"extent": 2, "parametric": True, "use_mlp": True},
        input_shape=(2, 5, 6, 8),
    ),
    LayerCase(
        id="ge_theta_global_static",
        cls=kr.GatherExcite,
        kwargs={"parametric": True},
        # Batch 4: with 2, training-mode BN maps any two values to -1, +1 and the global
        # gather kernel would get no gradient.
        input_shape=(4, 4, 4, 8),
        dynamic_spatial=False,
    ),
]

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
        ),
    ),
    LayerCase(
        id="srm_unbiased_noeps_nobn",
        cls=kr.StyleRecalibration,
        kwargs={"unbiased": True, "epsilon": 0.0, "use_batch_norm": False},
        input_shape=(2, 4, 4, 6),
    ),
]

"""The layout of a ResNet, written once: what the builders and the complexity counter both read.

A `Plan` is the stem, the residual blocks in order and their layers' names and sizes: each
block's branch (a sequence of convolution + batch normalisation [+ ReLU] steps), where the
recalibration module goes (after the branch's last batch normalisation, before the addition,
as in the official SRM code), and the projection shortcut where the shape changes.
`resnet.build_from_plan` turns a plan into layers; `complexity.plan_complexity` counts its
parameters and MACs without building it. Neither describes the topology itself.

Names are torchvision's module paths with `_` for `.` (`layer1.0.conv1` -> `layer1_0_conv1`).
"""

import dataclasses

# depth -> (block kind, blocks per stage)
RESNET_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
CIFAR_DEPTHS = (20, 32, 44, 56, 110)

_EXPANSION = {"basic": 1, "bottleneck": 4}


@dataclasses.dataclass(frozen=True)
class ConvBN:
    """A bias-free convolution padded like PyTorch's `padding=kernel // 2`, its batch
    normalisation, and a ReLU after it when `relu` names one."""

    conv: str
    filters: int
    kernel: int
    stride: int
    bn: str
    relu: str | None = None

    def output_size(self, size):
        """PyTorch's output size along one axis of an input `size` long."""
        return (size + 2 * (self.kernel // 2) - self.kernel) // self.stride + 1


@dataclasses.dataclass(frozen=True)
class MaxPool:
    """A max pool with PyTorch's symmetric `padding`."""

    name: str
    pool: int
    stride: int
    padding: int

    def output_size(self, size):
        return (size + 2 * self.padding - self.pool) // self.stride + 1


@dataclasses.dataclass(frozen=True)
class Block:
    """One residual block: `relu(module(branch(x)) + shortcut(x))`."""

    name: str  # e.g. "layer1_0"
    kind: str  # "basic" or "bottleneck"
    in_channels: int
    width: int  # torchvision's `planes`
    stride: int

    @property
    def out_channels(self):
        return self.width * _EXPANSION[self.kind]

    @property
    def projection(self):
        return self.stride != 1 or self.in_channels != self.out_channels

    @property
    def branch(self):
        """The residual branch's steps in order; the module follows the last one."""
        p, width = self.name, self.width
        if self.kind == "basic":
            return (
                ConvBN(f"{p}_conv1", width, 3, self.stride, f"{p}_bn1", f"{p}_relu1"),
                ConvBN(f"{p}_conv2", width, 3, 1, f"{p}_bn2"),
            )
        # torchvision's v1.5: the stride sits on the 3x3 convolution.
        return (
            ConvBN(f"{p}_conv1", width, 1, 1, f"{p}_bn1", f"{p}_relu1"),
            ConvBN(f"{p}_conv2", width, 3, self.stride, f"{p}_bn2", f"{p}_relu2"),
            ConvBN(f"{p}_conv3", self.out_channels, 1, 1, f"{p}_bn3"),
        )

    @property
    def shortcut(self):
        """The projection (1x1 convolution + batch normalisation), or None for the identity."""
        if not self.projection:
            return None
        p = self.name
        return ConvBN(f"{p}_downsample_0", self.out_channels, 1, self.stride, f"{p}_downsample_1")

    @property
    def module(self):
        return f"{self.name}_rclb"

    @property
    def add(self):
        return f"{self.name}_add"

    @property
    def relu(self):
        return f"{self.name}_relu"


@dataclasses.dataclass(frozen=True)
class Plan:
    """A ResNet's layout: the stem (a convolution step and an optional max pool), then the
    residual blocks in order."""

    stem: ConvBN
    pool: MaxPool | None
    blocks: tuple

    @property
    def features(self):
        return self.blocks[-1].out_channels


def _blocks(kind, counts, widths, stem_channels):
    blocks, channels = [], stem_channels
    for stage, (count, width) in enumerate(zip(counts, widths, strict=True)):
        for index in range(count):
            stride = 2 if stage > 0 and index == 0 else 1
            block = Block(f"layer{stage + 1}_{index}", kind, channels, width, stride)
            blocks.append(block)
            channels = block.out_channels
    return tuple(blocks)


def resnet_plan(depth):
    """The layout of the torchvision ResNet of `depth` (18, 34, 50, 101 or 152)."""
    if isinstance(depth, bool) or depth not in RESNET_DEPTHS:
        raise ValueError(
            "Argument `depth` must be one of "
            f"{', '.join(str(d) for d in RESNET_DEPTHS)}. Received: depth={depth!r}"
        )
    kind, counts = RESNET_DEPTHS[depth]
    return Plan(
        ConvBN("conv1", 64, 7, 2, "bn1", "relu"),
        MaxPool("maxpool", 3, 2, 1),
        _blocks(kind, counts, (64, 128, 256, 512), 64),
    )


def cifar_plan(depth):
    """The layout of a CIFAR ResNet: depth = 6n + 2, three stages of n BasicBlocks."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6 != 0:
        raise ValueError(
            "Argument `depth` must be 6n + 2 for an integer n >= 1 (e.g. "
            f"{', '.join(str(d) for d in CIFAR_DEPTHS)}). Received: depth={depth!r}"
        )
    n = (depth - 2) // 6
    return Plan(
        ConvBN("conv1", 16, 3, 1, "bn1", "relu"),
        None,
        _blocks("basic", (n, n, n), (16, 32, 64), 16),
    )

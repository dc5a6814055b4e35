"""The official PyTorch modules, re-written here (NCHW, as the official code runs) with the
official state-dict names, so that `load_torch_weights` is checked on the names it will meet.

The parity tests (tests/test_<module>.py, tests/test_convert.py, tests/test_network_weights.py)
compare each layer with these modules; the benchmarks time `SRMLayer` and `SELayer`. Imports
torch at module level: import it after `pytest.importorskip("torch")`.

Sources (the module docstrings in keras_recalib/layers/ give the files):

- SRM, SE, the global GE-theta: hyunjaelee410/style-based-recalibration-module
  (`SRMLayer`, `SELayer`, `GELayer`); the seeds' Conv1d SRM.
- ECA: BangguWu/ECANet `eca_layer`. SimAM: ZjjConan/SimAM `simam_module`.
- SGE: implus/PytorchInsight `SpatialGroupEnhance`. CBAM: Jongchan/attention-module.
- Coordinate Attention: houqb/CoordAttention `CoordAtt`.
- Triplet Attention: landskape-ai/triplet-attention `TripletAttention`.
- SCConv: the seed's `SCConv` (MCG-NKU/SCNet). Local Gather-Excite: timm's gather.
- ResNet: torchvision's ResNet (v1.5) with the official SRM code's `rclb` slot.
"""

import math

import torch
from torch import nn
from torch.nn import functional

# --- SRM -----------------------------------------------------------------------------------------


class SRMLayer(nn.Module):
    """The official SRMLayer: per-channel mean and unbiased std over H*W, a (C, 2) channel-wise
    weight summed over the two statistics, BatchNorm2d, sigmoid, `x * g`.

    `eps` > 0 is the latest official revision, sqrt(var + eps); `eps=0` the first one,
    `torch.std` (unbiased, no epsilon).
    """

    def __init__(self, channels, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.cfc = nn.Parameter(torch.zeros(channels, 2))
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x):
        n, c = x.shape[:2]
        flat = x.reshape(n, c, -1)
        mean = flat.mean(dim=2, keepdim=True)
        if self.eps:
            std = (flat.var(dim=2, keepdim=True) + self.eps).sqrt()
        else:
            std = flat.std(dim=2, keepdim=True)
        t = torch.cat((mean, std), dim=2)  # B x C x 2
        z = (t * self.cfc[None, :, :]).sum(dim=2)[:, :, None, None]
        return x * torch.sigmoid(self.bn(z))


class SeedSRM(nn.Module):
    """The seeds' SRM: the channel-wise weight as a grouped Conv1d, BatchNorm1d, torch.std."""

    def __init__(self, channels):
        super().__init__()
        self.cfc = nn.Conv1d(channels, channels, kernel_size=2, bias=False, groups=channels)
        self.bn = nn.BatchNorm1d(channels)

    def forward(self, x):
        n, c = x.shape[:2]
        flat = x.reshape(n, c, -1)
        u = torch.cat((flat.mean(-1, keepdim=True), flat.std(-1, keepdim=True)), -1)
        return x * torch.sigmoid(self.bn(self.cfc(u))).reshape(n, c, 1, 1)


# --- channel gates -------------------------------------------------------------------------------


class SELayer(nn.Module):
    """The SRM repository's SELayer: adaptive average pooling, Linear(C, C // r) with bias,
    ReLU, Linear(C // r, C) with bias, sigmoid, `x * g`."""

    def __init__(self, channels, reduction=16):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels),
        )

    def forward(self, x):
        b, c = x.shape[:2]
        gate = torch.sigmoid(self.fc(self.pool(x).view(b, c))).view(b, c, 1, 1)
        return x * gate


class ECALayer(nn.Module):
    """The official eca_layer: a Conv1d over the channel means."""

    def __init__(self, kernel_size=3):
        super().__init__()
        self.conv = nn.Conv1d(
            1, 1, kernel_size=kernel_size, padding=(kernel_size - 1) // 2, bias=False
        )

    def forward(self, x):
        y = functional.adaptive_avg_pool2d(x, 1)  # (batch, channels, 1, 1)
        y = self.conv(y.squeeze(-1).transpose(-1, -2)).transpose(-1, -2).unsqueeze(-1)
        return x * torch.sigmoid(y)


class _Flatten(nn.Module):
    def forward(self, x):
        return x.reshape(x.shape[0], -1)


class _CBAMChannelGate(nn.Module):
    def __init__(self, channels, reduction, pool_types):
        super().__init__()
        self.pool_types = pool_types
        width = channels // reduction
        self.mlp = nn.Sequential(
            _Flatten(), nn.Linear(channels, width), nn.ReLU(), nn.Linear(width, channels)
        )

    def forward(self, x):
        size = x.shape[2:]
        pools = {
            "avg": lambda: functional.avg_pool2d(x, size, stride=size),
            "max": lambda: functional.max_pool2d(x, size, stride=size),
            "lp": lambda: functional.lp_pool2d(x, 2, size, stride=size),
            "lse": lambda: torch.logsumexp(x.flatten(2), dim=2, keepdim=True),
        }
        total = sum(self.mlp(pools[p]()) for p in self.pool_types)
        return x * torch.sigmoid(total)[:, :, None, None]


class _BasicConv(nn.Module):
    """Conv2d(2, 1, k) without bias and BatchNorm2d(1, momentum 0.01): CBAM's and Triplet's."""

    def __init__(self, kernel_size):
        super().__init__()
        pad = (kernel_size - 1) // 2
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=pad, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01, affine=True)

    def forward(self, x):
        return self.bn(self.conv(x))


class _CBAMSpatialGate(nn.Module):
    def __init__(self, kernel_size):
        super().__init__()
        self.spatial = _BasicConv(kernel_size)

    def forward(self, x):
        pooled = torch.cat([x.max(dim=1, keepdim=True)[0], x.mean(dim=1, keepdim=True)], 1)
        return x * torch.sigmoid(self.spatial(pooled))


class CBAM(nn.Module):
    """The official CBAM (MODELS/cbam.py), with every pool type of its ChannelGate."""

    def __init__(self, channels, reduction=16, pool_types=("avg", "max"), kernel_size=7):
        super().__init__()
        self.ChannelGate = _CBAMChannelGate(channels, reduction, pool_types)
        self.SpatialGate = _CBAMSpatialGate(kernel_size)

    def forward(self, x):
        return self.SpatialGate(self.ChannelGate(x))


class SRMRepoGELayer(nn.Module):
    """The SRM repository's GELayer: a depthwise convolution over the whole map (kernel = the
    feature size), BatchNorm2d, sigmoid."""

    def __init__(self, channels, size):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=size, groups=channels),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x):
        return x * torch.sigmoid(self.conv(x))


class _GEMlp(nn.Module):
    def __init__(self, channels, hidden):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x):
        return self.fc2(functional.relu(self.fc1(x)))


class LocalGE(nn.Module):
    """Extent-e Gather-Excite (timm's gather; the official GEPP's ReLU before the MLP)."""

    def __init__(self, channels, extent, parametric, hidden=None):
        super().__init__()
        self.extent, self.parametric = extent, parametric
        if parametric:
            self.gather = nn.Sequential()
            n = int(math.log2(extent))
            for i in range(n):
                self.gather.add_module(
                    f"conv{i + 1}",
                    nn.Conv2d(channels, channels, 3, 2, 1, groups=channels, bias=False),
                )
                self.gather.add_module(f"norm{i + 1}", nn.BatchNorm2d(channels))
                if i < n - 1 or hidden:  # no ReLU after the last BN unless an MLP follows
                    self.gather.add_module(f"act{i + 1}", nn.ReLU())
        self.mlp = _GEMlp(channels, hidden) if hidden else None

    def forward(self, x):
        if self.parametric:
            g = self.gather(x)
        else:
            e = self.extent
            g = functional.avg_pool2d(x, 2 * e - 1, e, e - 1, count_include_pad=False)
        if self.mlp is not None:
            g = self.mlp(g)
        return x * torch.sigmoid(functional.interpolate(g, size=x.shape[-2:]))


# --- gates over positions ------------------------------------------------------------------------


class SimAM(nn.Module):
    """The official simam_module: the closed-form energy, n = H * W - 1."""

    def __init__(self, e_lambda=1e-4):
        super().__init__()
        self.e_lambda = e_lambda

    def forward(self, x):
        n = x.shape[2] * x.shape[3] - 1
        d = (x - x.mean(dim=[2, 3], keepdim=True)).pow(2)
        y = d / (4 * (d.sum(dim=[2, 3], keepdim=True) / n + self.e_lambda)) + 0.5
        return x * torch.sigmoid(y)


class SpatialGroupEnhance(nn.Module):
    """The official SpatialGroupEnhance (weight 0, bias 1 per group)."""

    def __init__(self, groups):
        super().__init__()
        self.groups = groups
        self.weight = nn.Parameter(torch.zeros(1, groups, 1, 1))
        self.bias = nn.Parameter(torch.ones(1, groups, 1, 1))

    def forward(self, x):
        b, c, h, w = x.shape
        x = x.reshape(b * self.groups, -1, h, w)
        xn = (x * x.mean(dim=(2, 3), keepdim=True)).sum(dim=1, keepdim=True)
        t = xn.reshape(b * self.groups, -1)
        t = t - t.mean(dim=1, keepdim=True)
        t = t / (t.std(dim=1, keepdim=True) + 1e-5)
        t = t.reshape(b, self.groups, h, w) * self.weight + self.bias
        x = x * torch.sigmoid(t.reshape(b * self.groups, 1, h, w))
        return x.reshape(b, c, h, w)


class CoordAtt(nn.Module):
    """The official CoordAtt; `names` are the two gates' convolutions, coordatt.py's
    ("conv_h", "conv_w") or mbv2_ca.py's ("conv2", "conv3")."""

    def __init__(self, channels, reduction=32, names=("conv_h", "conv_w")):
        super().__init__()
        self.names = names
        mip = max(8, channels // reduction)
        self.conv1 = nn.Conv2d(channels, mip, 1)
        self.bn1 = nn.BatchNorm2d(mip)
        for name in names:
            setattr(self, name, nn.Conv2d(mip, channels, 1))

    def forward(self, x):
        _, _, h, w = x.shape
        x_h = functional.adaptive_avg_pool2d(x, (None, 1))
        x_w = functional.adaptive_avg_pool2d(x, (1, None)).permute(0, 1, 3, 2)
        y = self.bn1(self.conv1(torch.cat([x_h, x_w], dim=2)))
        y = y * functional.relu6(y + 3) / 6
        y_h, y_w = torch.split(y, [h, w], dim=2)
        a_h = getattr(self, self.names[0])(y_h).sigmoid()
        a_w = getattr(self, self.names[1])(y_w.permute(0, 1, 3, 2)).sigmoid()
        return x * a_w * a_h


class _TripletGate(nn.Module):
    """The official AttentionGate: Z-pool, `_BasicConv`, sigmoid; `inner` is the attribute
    name of its conv (root file: "conv", MODELS/: "spatial")."""

    def __init__(self, kernel_size, inner):
        super().__init__()
        self.inner = inner
        setattr(self, inner, _BasicConv(kernel_size))

    def forward(self, x):
        z = torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), 1)
        return x * torch.sigmoid(getattr(self, self.inner)(z))


class TripletAttention(nn.Module):
    """The official TripletAttention, with the root file's attribute names (`layout="root"`:
    cw, hc, hw) or MODELS/'s (ChannelGateH, ChannelGateW, SpatialGate)."""

    def __init__(self, kernel_size=7, no_spatial=False, layout="root"):
        super().__init__()
        if layout == "root":
            self.gates, inner = ("cw", "hc", "hw"), "conv"
        else:
            self.gates, inner = ("ChannelGateH", "ChannelGateW", "SpatialGate"), "spatial"
        self.no_spatial = no_spatial
        for name in self.gates[: 2 if no_spatial else 3]:
            setattr(self, name, _TripletGate(kernel_size, inner))

    def forward(self, x):
        out1 = getattr(self, self.gates[0])(x.permute(0, 2, 1, 3)).permute(0, 2, 1, 3)
        out2 = getattr(self, self.gates[1])(x.permute(0, 3, 2, 1)).permute(0, 3, 2, 1)
        if self.no_spatial:
            return 1 / 2 * (out1 + out2)
        return 1 / 3 * (getattr(self, self.gates[2])(x) + out1 + out2)


# --- convolutions --------------------------------------------------------------------------------


class SCConv(nn.Module):
    """The seed's SCConv; `stride` on k1 and k4 and `filters` as the official code's planes."""

    def __init__(self, channels, filters=None, pooling_r=4, stride=1, mode="nearest"):
        super().__init__()
        self.mode = mode
        half, out_half = channels // 2, (filters or channels) // 2

        def conv_bn(cin, cout, s=1):
            return [nn.Conv2d(cin, cout, 3, stride=s, padding=1, bias=False), nn.BatchNorm2d(cout)]

        self.k1 = nn.Sequential(*conv_bn(half, out_half, stride))
        self.k2 = nn.Sequential(nn.AvgPool2d(pooling_r, pooling_r), *conv_bn(half, half))
        self.k3 = nn.Sequential(*conv_bn(half, half))
        self.k4 = nn.Sequential(*conv_bn(half, out_half, stride))

    def forward(self, x):
        x1, x2 = x.chunk(2, dim=1)
        if self.mode == "nearest":
            up = functional.interpolate(self.k2(x1), x1.size()[2:])
        else:
            up = functional.interpolate(
                self.k2(x1), x1.size()[2:], mode="bilinear", align_corners=False
            )
        out = torch.mul(self.k3(x1), torch.sigmoid(torch.add(x1, up)))
        return torch.cat([self.k4(out), self.k1(x2)], dim=1)


# --- networks ------------------------------------------------------------------------------------

# The recalibration modules a ResNet block can hold in its `rclb` slot. The official SRM
# ResNets use torch.std (eps=0).
RCLB = {"srm": lambda channels: SRMLayer(channels, eps=0.0), "se": SELayer}


class _Basic(nn.Module):
    expansion = 1

    def __init__(self, cin, width, stride, downsample, rclb):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample
        self.rclb = RCLB[rclb](width) if rclb else None

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.rclb is not None:
            out = self.rclb(out)
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + shortcut)


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, width, stride, downsample, rclb):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.downsample = downsample
        self.rclb = RCLB[rclb](width * 4) if rclb else None

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.rclb is not None:
            out = self.rclb(out)
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + shortcut)


class ResNet(nn.Module):
    """torchvision's ResNet (v1.5) at depth 18 or 50, a module from `RCLB` in each block."""

    def __init__(self, depth, rclb=None, num_classes=10):
        super().__init__()
        block, counts = {18: (_Basic, (2, 2, 2, 2)), 50: (_Bottleneck, (3, 4, 6, 3))}[depth]
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        widths = (64, 128, 256, 512)
        for stage, (count, width) in enumerate(zip(counts, widths, strict=True), 1):
            blocks = []
            for index in range(count):
                stride = 2 if stage > 1 and index == 0 else 1
                downsample = None
                if stride != 1 or cin != width * block.expansion:
                    downsample = nn.Sequential(
                        nn.Conv2d(cin, width * block.expansion, 1, stride, bias=False),
                        nn.BatchNorm2d(width * block.expansion),
                    )
                blocks.append(block(cin, width, stride, downsample, rclb))
                cin = width * block.expansion
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean((2, 3)))

"""PyTorch SRM and SE written from the official semantics (NCHW, as the official code runs).

hyunjaelee410/style-based-recalibration-module, `models/recalibration_modules.py`:

- `SRMLayer`: per-channel mean and unbiased std over H*W (the latest official revision takes
  sqrt(var + 1e-5)), a (C, 2) channel-wise weight summed over the two statistics,
  `BatchNorm2d` on the (B, C, 1, 1) result, sigmoid, `x * g`.
- `SELayer`: adaptive average pooling, Linear(C, C // r) with bias, ReLU, Linear(C // r, C)
  with bias, sigmoid, `x * g` (r = 16).
"""

import torch
from torch import nn


class SRMLayer(nn.Module):
    def __init__(self, channels, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.cfc = nn.Parameter(torch.zeros(channels, 2))
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x):
        n, c = x.shape[:2]
        flat = x.reshape(n, c, -1)
        mean = flat.mean(dim=2, keepdim=True)
        std = (flat.var(dim=2, keepdim=True) + self.eps).sqrt()
        t = torch.cat((mean, std), dim=2)  # B x C x 2
        z = (t * self.cfc[None, :, :]).sum(dim=2)[:, :, None, None]
        return x * torch.sigmoid(self.bn(z))


class SELayer(nn.Module):
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


class Floor(nn.Module):
    """`x * g` with a per-(batch, channel) g: PyTorch's own floor."""

    def __init__(self, batch, channels):
        super().__init__()
        self.g = nn.Parameter(torch.rand(batch, channels, 1, 1))

    def forward(self, x):
        return x * self.g

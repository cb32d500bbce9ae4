"""``tcs-unfold``: deep-unfolded GAP with small learned spatio-temporal denoisers.

The default neural TCS decoder. Starting from the normalised measurement
Ybar (paper Eq. 2) repeated over the B frames, K stages each do

    x <- x + lambda_k * C * (Y - A x) / R          (GAP data-consistency step)
    x <- x + D_k(x, C, Ybar)                       (learned residual denoiser)

with the real masks C, forward model A and R = sum_b C_b (see
:mod:`emcs.tcs.operator`; deep unfolding of GAP as in Meng, Yuan & Jalali,
Int. J. Comput. Vis. 2023, and Wu, Zhang & Mou, ICCV 2021). D_k works at half
resolution (2x2 pixel-unshuffle) with the B frames folded into the batch for
3x3 convolutions and mixed along time by (3, 1, 1) convolutions plus a
frame-mean context branch. Nothing in the network depends on B, on the mask,
or on the frame size, so one model serves B = 10 .. 30, any seed or explicit
mask, and any H x W.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from emcs.tcs.nets import ARCHITECTURES
from emcs.tcs.operator import adjoint, mask_sum
from emcs.tcs.operator import forward as tcs_forward

ARCHITECTURE = ARCHITECTURES["unfold"]


def pad_even(y: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad y (n, H, W) and masks (n or 1, B, H, W) to even H, W; expand masks to n.

    Both decoders halve the resolution once; callers crop their output back
    to the original (H, W).
    """
    n, H, W = y.shape
    ph, pw = H % 2, W % 2
    if ph or pw:
        y = F.pad(y[:, None], (0, pw, 0, ph), mode="replicate")[:, 0]
        masks = F.pad(masks, (0, pw, 0, ph))
    return y, masks.expand(n, -1, -1, -1)


class TemporalMix(nn.Module):
    """Mix features across the B frames: (3,1,1) convolution + frame-mean context."""

    def __init__(self, width: int):
        super().__init__()
        self.tconv = nn.Conv3d(width, width, (3, 1, 1), padding=(1, 0, 0))
        self.ctx = nn.Conv2d(width, width, 1)

    def forward(self, h: torch.Tensor, n: int) -> torch.Tensor:
        nb, c, hh, ww = h.shape
        b = nb // n
        v = h.view(n, b, c, hh, ww).transpose(1, 2)  # (n, c, b, h, w)
        t = self.tconv(v).transpose(1, 2)  # (n, b, c, h, w)
        m = self.ctx(v.mean(2))[:, None]  # (n, 1, c, h, w)
        return h + F.leaky_relu(t + m, 0.1).reshape(nb, c, hh, ww)


class Denoiser(nn.Module):
    """One stage's residual denoiser at half resolution (input (n*B, 3, H, W), H, W even)."""

    def __init__(self, width: int, depth: int = 3):
        super().__init__()
        self.head = nn.Conv2d(12, width, 3, padding=1)
        self.body = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(depth - 1))
        self.mix = nn.ModuleList(TemporalMix(width) for _ in range(2))
        self.tail = nn.Conv2d(width, 4, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, z: torch.Tensor, n: int) -> torch.Tensor:
        h = F.leaky_relu(self.head(F.pixel_unshuffle(z, 2)), 0.1)
        h = self.mix[0](h, n)
        for i, conv in enumerate(self.body):
            h = h + F.leaky_relu(conv(h), 0.1)
            if i == len(self.body) - 1:
                h = self.mix[1](h, n)
        return F.pixel_shuffle(self.tail(h), 2)[:, 0]


class UnfoldNet(nn.Module):
    """Deep-unfolded GAP decoder.

    Parameters
    ----------
    stages : int
        Number of GAP + denoiser stages K.
    width : int
        Feature channels of each denoiser (at half resolution).
    depth : int
        3x3 convolutions per denoiser.

    Examples
    --------
    >>> net = UnfoldNet(stages=2, width=8)
    >>> y = torch.rand(1, 32, 32); C = (torch.rand(1, 10, 32, 32) > 0.5).float()
    >>> net(y, C).shape
    torch.Size([1, 10, 32, 32])
    """

    def __init__(self, stages: int = 5, width: int = 32, depth: int = 3):
        super().__init__()
        self.config = {"stages": stages, "width": width, "depth": depth}
        self.denoisers = nn.ModuleList(Denoiser(width, depth) for _ in range(stages))
        self.step = nn.Parameter(torch.full((stages,), 2.0))  # sigmoid(2) ~ 0.88

    def forward(self, y: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Reconstruct (n, B, H, W) from y (n, H, W) and masks (n or 1, B, H, W) (0/1 floats)."""
        n, H, W = y.shape
        y, masks = pad_even(y, masks)
        B = masks.shape[1]
        r = mask_sum(masks)
        ybar = y / r
        x = ybar[:, None].expand(n, B, -1, -1)
        ybar_b = x.reshape(n * B, 1, *x.shape[2:])
        c_b = masks.reshape(n * B, 1, *x.shape[2:])
        for k, den in enumerate(self.denoisers):
            lam = torch.sigmoid(self.step[k])
            x = x + lam * adjoint((y - tcs_forward(x, masks)) / r, masks)
            z = torch.cat([x.reshape(n * B, 1, *x.shape[2:]), c_b, ybar_b], 1)
            x = x + den(z, n).view(n, B, *x.shape[2:])
        return x[..., :H, :W]

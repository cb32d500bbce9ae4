"""A compact, fully convolutional DLSS network (one net for every pitch 4 ... 10).

Input channels (full resolution, each tile normalised to [0, 1] by the min and
max of its measured samples):

0. bilinear interpolation of the sparse samples,
1. nearest-neighbour fill of the sparse samples,
2. a binary mask of the measured positions (tells the net the grid phase),
3. a constant ``s/10`` (the grid pitch).

The network predicts a residual added to channel 0 (the bilinear image), so an
untrained net starts as bilinear interpolation. Architecture: pixel-unshuffle
by 2, a 3-level U-Net (widths ``w, 4w/3, 2w``) with residual blocks at 1/8
resolution, pixel-shuffle back. ~0.6 M parameters at ``width=48``.

With ``context > 0`` a context branch (two more stride-2 levels to 1/32
resolution, ``context`` residual blocks, upsampled and added at 1/8) widens
the receptive field from ~90 to ~350 pixels: at pitch 10 the plain U-Net
sees only ~9 samples across, too few to recognise a lattice. The branch's
output conv starts at zero, so a context net initialised from plain weights
computes exactly what they did.

>>> import torch
>>> net = DLSSNet(width=16)
>>> net(torch.zeros(1, 4, 40, 24)).shape
torch.Size([1, 1, 40, 24])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ARCHITECTURE = "dlss-unet-v1"
IN_CHANNELS = 4


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class _ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.c1 = _conv(ch, ch)
        self.c2 = _conv(ch, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c2(F.leaky_relu(self.c1(x), 0.1))


class DLSSNet(nn.Module):
    """U-Net predicting the correction to bilinear interpolation.

    Parameters
    ----------
    width : int
        Channels at half resolution (the first level); deeper levels use
        ``4*width/3`` and ``2*width``.
    blocks : int
        Residual blocks at 1/8 resolution.
    context : int
        Residual blocks of the 1/32-resolution context branch (0: no branch).
    """

    def __init__(self, width: int = 48, blocks: int = 2, context: int = 0):
        super().__init__()
        w1, w2, w3 = width, (4 * width) // 3, 2 * width
        act = nn.LeakyReLU(0.1)
        self.inc = nn.Sequential(_conv(4 * IN_CHANNELS, w1), act, _conv(w1, w1), act)
        self.down1 = nn.Sequential(_conv(w1, w2, 2), act, _conv(w2, w2), act)
        self.down2 = nn.Sequential(_conv(w2, w3, 2), act)
        self.mid = nn.Sequential(*[_ResBlock(w3) for _ in range(blocks)])
        self.up2 = nn.ConvTranspose2d(w3, w2, 2, stride=2)
        self.dec2 = nn.Sequential(_conv(2 * w2, w2), act)
        self.up1 = nn.ConvTranspose2d(w2, w1, 2, stride=2)
        self.dec1 = nn.Sequential(_conv(2 * w1, w1), act)
        self.head = nn.Conv2d(w1, 4, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.context = int(context)
        if self.context > 0:
            self.ctx_down = nn.Sequential(_conv(w3, w3, 2), act, _conv(w3, w3, 2), act)
            self.ctx_mid = nn.Sequential(*[_ResBlock(w3) for _ in range(self.context)])
            self.ctx_out = _conv(w3, w3)
            nn.init.zeros_(self.ctx_out.weight)
            nn.init.zeros_(self.ctx_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 4, H, W) -> (N, 1, H, W); any H, W (padded internally to a multiple of 8)."""
        h, w = x.shape[-2:]
        ph, pw = (-h) % 8, (-w) % 8
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x
        z = F.pixel_unshuffle(xp, 2)
        e1 = self.inc(z)
        e2 = self.down1(e1)
        m = self.mid(self.down2(e2))
        if self.context > 0:
            c = self.ctx_mid(self.ctx_down(m))
            c = F.interpolate(c, size=m.shape[-2:], mode="bilinear", align_corners=False)
            m = m + self.ctx_out(c)
        d2 = self.dec2(torch.cat([self.up2(m), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        res = F.pixel_shuffle(self.head(d1), 2)[..., :h, :w]
        return x[:, :1] + res


#: builders for :func:`emcs.nn.weights.load_model` (called with the card's config)
BUILDERS = {ARCHITECTURE: DLSSNet}

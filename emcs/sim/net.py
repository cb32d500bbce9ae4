"""The compact VDL-SIM network: wide-field frame -> 2x super-resolved frame.

A fully convolutional residual network in the spirit of VDL-SIM's
channel-pruned CNN (64/32/16 channels): a head convolution, ``blocks``
residual blocks at the camera resolution, a pixel-shuffle 2x upsampler, one
convolution at the fine resolution and an output convolution; the output is
added to a bilinear upsampling of the input (the network learns the residual).
Any frame size works; large frames are tiled by :func:`emcs.nn.tiling.tiled_apply`.

Inputs are normalised wide-field frames (:func:`normalise`), outputs are in the
same units (multiply by the returned scale to get back to camera units).

>>> import torch
>>> net = VDLSIM(channels=16, blocks=2)
>>> tuple(net(torch.zeros(1, 1, 20, 24)).shape)
(1, 1, 40, 48)
"""

from __future__ import annotations

import numpy as np
from torch import nn
from torch.nn import functional as F

ARCHITECTURE = "vdlsim"


class _ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(x)))


class VDLSIM(nn.Module):
    """Compact SR network (about 180 k parameters at 32 channels, 6 blocks).

    Parameters
    ----------
    channels : int
        Feature width (16, 32 or 64 as in the paper's pruning study).
    blocks : int
        Residual blocks at the input resolution.
    """

    def __init__(self, channels: int = 32, blocks: int = 6):
        super().__init__()
        c = int(channels)
        self.channels, self.n_blocks = c, int(blocks)
        self.head = nn.Conv2d(1, c, 3, padding=1)
        self.blocks = nn.Sequential(*[_ResBlock(c) for _ in range(self.n_blocks)])
        self.body_tail = nn.Conv2d(c, c, 3, padding=1)
        self.up = nn.Conv2d(c, 4 * c, 3, padding=1)
        self.fine = nn.Conv2d(c, c, 3, padding=1)
        self.out = nn.Conv2d(c, 1, 3, padding=1)

    def forward(self, x):
        f = self.head(x)
        f = f + self.body_tail(self.blocks(f))
        f = F.relu(F.pixel_shuffle(self.up(f), 2))
        f = F.relu(self.fine(f))
        base = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return base + self.out(f)


def build(channels: int = 32, blocks: int = 6) -> VDLSIM:
    """Builder used by :func:`emcs.nn.weights.load_model`."""
    return VDLSIM(channels=channels, blocks=blocks)


BUILDERS = {ARCHITECTURE: build}


def normalisation(frame: np.ndarray) -> tuple[float, float]:
    """(low, scale) of a wide-field frame: 1st percentile and the 99.9th - 1st
    percentile range of a lightly smoothed copy (robust to shot noise)."""
    from scipy.ndimage import gaussian_filter

    sm = gaussian_filter(np.asarray(frame, np.float32), 1.0)
    lo, hi = np.percentile(sm, [1.0, 99.9])
    return float(lo), float(max(hi - lo, 1e-6))


def normalise(frame: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Normalised float32 frame and its (low, scale)."""
    lo, scale = normalisation(frame)
    return ((np.asarray(frame, np.float32) - lo) / scale).astype(np.float32), lo, scale

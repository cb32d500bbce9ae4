"""The raw-input SIM network: the 9 raw frames of a time point -> one 2x SR frame.

A physics-informed front-end turns the raw frames into phase-aware images on the
2x grid, and a compact fully convolutional network (the VDL-SIM body) denoises and
sharpens them, in the spirit of rDL-SIM (Qiao et al., *Nat. Biotechnol.* 41, 367,
2023), which also feeds a network the pattern parameters estimated from the data,
and of DFCAN / ML-SIM (Qiao et al., *Nat. Methods* 18, 194, 2021; Christensen et al.,
*Biophys. Rep.* 1, 100003, 2021), which map raw frames to an SR image end to end.

Front-end (:func:`features`), per time point:

1. background subtraction, edge taper and band separation (:mod:`emcs.sim.wiener`);
2. pattern parameters (wave vector, phase, modulation of every angle) estimated from
   the data, or given;
3. three channels on the 2x grid: the wide-field image (band 0), and the generalised
   Wiener reconstruction at ``w`` = 0.05 (sharp, noisy) and 0.3 (smooth).

The network never sees the frames in their recorded order: band separation and
parameter estimation make its input independent of the angle order, of the
initial phases and of the pattern orientation (the raw order is fixed first by
``order``). The network space-to-depths its input to the camera grid, runs
residual blocks there, pixel-shuffles back to the 2x grid and adds a learned mix
of the input channels. Intensities are normalised by the wide-field channel's
robust range (:func:`emcs.sim.net.normalisation`); multiply the output by it.

>>> import torch
>>> net = RawSIMNet(channels=8, blocks=1)
>>> tuple(net(torch.zeros(1, 3, 40, 48)).shape)
(1, 1, 40, 48)
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import fft as sfft
from torch import nn
from torch.nn import functional as F

from emcs.sim.net import _ResBlock, normalisation
from emcs.sim.otf import Optics

ARCHITECTURE = "vdlsim-raw"
#: Wiener parameters of the reconstruction channels
WIENER_W = (0.05, 0.3)
#: input channels: wide-field, then one Wiener reconstruction per entry of WIENER_W
IN_CHANNELS = 1 + len(WIENER_W)


class RawSIMNet(nn.Module):
    """Compact SR network on the front-end's channels (2x grid in, 2x grid out).

    Parameters
    ----------
    channels : int
        Feature width.
    blocks : int
        Residual blocks at the camera resolution.
    """

    def __init__(self, channels: int = 32, blocks: int = 4):
        super().__init__()
        c, cin = int(channels), IN_CHANNELS
        self.channels, self.n_blocks = c, int(blocks)
        self.head = nn.Conv2d(4 * cin, c, 3, padding=1)
        self.blocks = nn.Sequential(*[_ResBlock(c) for _ in range(self.n_blocks)])
        self.body_tail = nn.Conv2d(c, c, 3, padding=1)
        self.up = nn.Conv2d(c, 4 * c, 3, padding=1)
        self.fine = nn.Conv2d(c + cin, c, 3, padding=1)
        self.out = nn.Conv2d(c, 1, 3, padding=1)
        self.skip = nn.Conv2d(cin, 1, 1)
        with torch.no_grad():  # start from the smooth Wiener channel
            self.skip.weight.zero_()
            self.skip.weight[0, -1] = 1.0
            self.skip.bias.zero_()

    def forward(self, x):
        f = self.head(F.pixel_unshuffle(x, 2))
        f = f + self.body_tail(self.blocks(f))
        f = F.relu(F.pixel_shuffle(self.up(f), 2))
        f = F.relu(self.fine(torch.cat([f, x], dim=1)))
        return self.skip(x) + self.out(f)


def build(channels: int = 32, blocks: int = 4) -> RawSIMNet:
    """Builder used by :func:`emcs.nn.weights.load_model`."""
    return RawSIMNet(channels=channels, blocks=blocks)


BUILDERS = {ARCHITECTURE: build}


def features(raw: np.ndarray, optics: Optics, patterns=None, settings=None):
    """The network's input channels of one time point.

    Parameters
    ----------
    raw : array (A, P, H, W)
        Raw frames, angle-major.
    optics : Optics
    patterns : list of Pattern, optional
        Known pattern parameters; estimated from the data when None.
    settings : emcs.sim.wiener.WienerSettings, optional
        Estimation settings and apodisation (its ``wiener`` is not used).

    Returns
    -------
    feats : ndarray (IN_CHANNELS, 2H, 2W) float32
        Wide-field, Wiener (w = 0.05), Wiener (w = 0.3), in camera units above background.
    patterns : list of Pattern
    details : list of dict
        Estimation diagnostics (empty when ``patterns`` were given).
    """
    from emcs.sim.wiener import WienerSettings, bands_and_patterns, pad2x, wiener_terms

    settings = settings or WienerSettings()
    C, patterns, details = bands_and_patterns(raw, optics, patterns, settings)
    num, den, apod = wiener_terms(C, patterns, optics, settings.apodization)
    chans = [pad2x(C[:, 0].mean(axis=0))]
    chans += [apod * num / (den + w**2) for w in WIENER_W]
    out = np.stack([sfft.ifft2(c).real for c in chans]).astype(np.float32)
    return out, patterns, details


def normalise(feats: np.ndarray) -> tuple[np.ndarray, float]:
    """Channels divided by the wide-field channel's robust range (after removing its low level)."""
    lo, scale = normalisation(feats[0])
    return ((feats - lo) / scale).astype(np.float32), scale

"""Reference images for scoring SIM reconstructions against a simulated ground truth.

The ground truth of a simulation has detail beyond any optical system. We
compare against the *ideal SIM image* (:func:`sim_reference`): the truth
filtered with an OTF-shaped response of cut-off ``f_c + |k|``, what a perfect
2-beam SIM could resolve (Gustafsson, *J. Microscopy* 198, 82, 2000). The
score itself (affine intensity fit, PSNR and SSIM on the interior) is
:func:`emcs.compare.metrics.affine_fidelity`, the one metrics module of emcs.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft

from emcs.sim.otf import Optics, freq_grid, otf_profile


def sim_reference(truth: np.ndarray, optics: Optics, k_rel: float = 0.8) -> np.ndarray:
    """Truth (SR grid) band-limited like an ideal SIM reconstruction."""
    px = optics.pixel_nm / 2
    ky, kx = freq_grid(truth.shape, px)
    A = otf_profile(np.hypot(ky, kx) / (optics.cutoff * (1 + k_rel)))
    return sfft.ifft2(sfft.fft2(truth) * A).real.astype(np.float32)


def bilinear_up(frame: np.ndarray) -> np.ndarray:
    """Bilinear 2x upsampling on the SR grid convention (SR pixel 2i = camera pixel i)."""
    from scipy.ndimage import map_coordinates

    H, W = frame.shape
    yy, xx = np.mgrid[0:2 * H, 0:2 * W] / 2.0
    return map_coordinates(frame.astype(np.float64), [yy, xx], order=1, mode="nearest").astype(np.float32)

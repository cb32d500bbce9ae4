"""DLSS-STEM: full-resolution STEM images from sparse regular-grid scans.

- :mod:`emcs.dlss.sampling`: the sparse grid (pitch ``s``, offset ``(N mod s)//2``),
  :func:`~emcs.dlss.sampling.subsample`, coverage parsing;
- :mod:`emcs.dlss.interp`: nearest / bilinear / bicubic / Lanczos interpolation
  from the grid;
- :mod:`emcs.dlss.net`: the compact U-Net (one network for s = 4 ... 10);
- :mod:`emcs.dlss.supersample`: tiled inference with data consistency;
- :mod:`emcs.dlss.safeguard`: the self-check of the network against bilinear
  on the frame's own samples, and the per-tile fallback;
- :mod:`emcs.dlss.smoothing`: the self-calibrated smoothing (``--smooth auto``) and
  :func:`~emcs.dlss.smoothing.paper_blur`, DLSS-STEM's blurred target (the network's
  default output, ``--target blurred``);
- :mod:`emcs.dlss.files`: :func:`~emcs.dlss.files.subsample_file` and
  :func:`~emcs.dlss.files.supersample_file`, the file-level functions behind
  ``emcs subsample`` / ``emcs supersample``;

Reference: J. M. Ede, "Deep Learning Supersampled Scanning Transmission
Electron Microscopy", arXiv 1910.10467.

>>> import numpy as np
>>> from emcs.dlss import subsample, supersample_frame
>>> x = np.random.default_rng(0).random((64, 64)).astype(np.float32)
>>> supersample_frame(subsample(x, 4), 4, x.shape, method="bilinear").shape
(64, 64)
"""

from emcs.dlss.files import subsample_file, supersample_file
from emcs.dlss.interp import METHODS, upsample
from emcs.dlss.sampling import (
    NET_FACTORS,
    grid_offset,
    grid_positions,
    parse_coverage,
    sample_mask,
    sparse_shape,
    subsample,
)
from emcs.dlss.smoothing import paper_blur
from emcs.dlss.supersample import TARGETS, supersample_frame

__all__ = [
    "METHODS",
    "NET_FACTORS",
    "TARGETS",
    "grid_offset",
    "grid_positions",
    "paper_blur",
    "parse_coverage",
    "sample_mask",
    "sparse_shape",
    "subsample",
    "subsample_file",
    "supersample_file",
    "supersample_frame",
    "upsample",
]

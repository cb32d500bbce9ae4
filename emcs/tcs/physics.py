"""The TCS forward model and its adjoint, kept apart from the decoders.

For B frames X (…, B, H, W) and binary masks C (B, H, W) (broadcastable):

    forward:  Y = A(X)   = sum_b C_b * X_b                  (…, H, W)
    adjoint:  A^T(Y)     = [C_b * Y]_b                       (…, B, H, W)
    A A^T     = diag(R),  R = sum_b C_b^2 (= sum_b C_b for binary masks)
    Ybar      = Y / R    (R := 1 where no mask is open)      (paper Eq. 2)

The functions accept numpy arrays or torch tensors alike (they only use
elementwise products and sums). The decoders in :mod:`emcs.tcs.gaptv` and
:mod:`emcs.tcs.nets` build on these.
"""

from __future__ import annotations

import numpy as np

#: dihedral transforms (see :func:`dihedral`) averaged by a self-ensemble of size 1, 2, 4 or 8
ENSEMBLES = {1: (0,), 2: (0, 4), 4: (0, 2, 4, 6), 8: tuple(range(8))}


def forward(x, masks):
    """Y = sum_b C_b * X_b over the frame axis (-3)."""
    return (x * masks).sum(-3)


def adjoint(y, masks):
    """A^T Y = C_b * Y for every b: shape (…, B, H, W)."""
    return y[..., None, :, :] * masks


def mask_sum(masks):
    """R = sum_b C_b^2, with zeros replaced by 1 so that divisions are safe."""
    r = (masks * masks).sum(-3)
    return r + (r == 0)


def normalized_measurement(y, masks):
    """Ybar = Y / R (paper Eq. 2): a per-pixel average over the open frames."""
    return y / mask_sum(masks)


def dihedral(a: np.ndarray, t: int, inverse: bool = False) -> np.ndarray:
    """Transform ``t`` (0..7) of the last two axes of a numpy array: rotate by
    ``t % 4`` quarter turns, then flip x if ``t >= 4`` (``inverse`` undoes it).

    Applied to frames and masks alike it commutes with :func:`forward`
    (a pixel-wise model), so a decoder may be run on transformed measurements
    and its output transformed back (a geometric self-ensemble).
    """
    if inverse:
        if t >= 4:
            a = a[..., ::-1]
        return np.ascontiguousarray(np.rot90(a, -(t % 4), axes=(-2, -1)))
    a = np.rot90(a, t % 4, axes=(-2, -1))
    return np.ascontiguousarray(a[..., ::-1] if t >= 4 else a)

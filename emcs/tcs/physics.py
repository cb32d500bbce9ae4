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

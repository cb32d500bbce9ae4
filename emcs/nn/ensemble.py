"""Geometric self-ensembles: run a network on flipped/rotated inputs and average.

:func:`dihedral` applies one of the 8 symmetries of the square to the last two
axes of an array; :data:`ENSEMBLES` says which of them an ensemble of size 1,
2, 4 or 8 averages. The TCS decoder (``emcs decode --ensemble``) and the DLSS
network (``emcs supersample --ensemble``) use them; numpy only.
"""

from __future__ import annotations

import numpy as np

#: dihedral transforms (see :func:`dihedral`) averaged by a self-ensemble of size 1, 2, 4 or 8
ENSEMBLES = {1: (0,), 2: (0, 4), 4: (0, 2, 4, 6), 8: tuple(range(8))}


def dihedral(a: np.ndarray, t: int, inverse: bool = False) -> np.ndarray:
    """Transform ``t`` (0..7) of the last two axes of a numpy array: rotate by
    ``t % 4`` quarter turns, then flip x if ``t >= 4`` (``inverse`` undoes it).

    Applied to frames and masks alike it commutes with the TCS forward model
    (a pixel-wise model), so a decoder may be run on transformed measurements
    and its output transformed back (a geometric self-ensemble).

    Examples
    --------
    >>> a = np.arange(6).reshape(2, 3)
    >>> all((dihedral(dihedral(a, t), t, inverse=True) == a).all() for t in range(8))
    True
    """
    if inverse:
        if t >= 4:
            a = a[..., ::-1]
        return np.ascontiguousarray(np.rot90(a, -(t % 4), axes=(-2, -1)))
    a = np.rot90(a, t % 4, axes=(-2, -1))
    return np.ascontiguousarray(a[..., ::-1] if t >= 4 else a)

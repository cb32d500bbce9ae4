"""Electron optics shared by the HRTEM and HAADF generators."""

from __future__ import annotations

import math

__all__ = ["wavelength"]


def wavelength(kv: float) -> float:
    """Relativistic electron wavelength in Å for an accelerating voltage in kV.

    Examples
    --------
    >>> round(wavelength(300.0), 5)
    0.01969
    """
    v = kv * 1e3
    return 12.2642598 / math.sqrt(v * (1 + 0.978476e-6 * v))

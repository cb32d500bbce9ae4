"""Transitional alias of the TCS forward model, now in :mod:`emcs.tcs.operator`.

Only ``emcs.tcs.nets.train`` still imports it; delete this module when that
file imports :func:`emcs.tcs.operator.mask_sum` instead.
"""

from emcs.tcs.operator import adjoint, forward, mask_sum, normalized_measurement

__all__ = ["adjoint", "forward", "mask_sum", "normalized_measurement"]

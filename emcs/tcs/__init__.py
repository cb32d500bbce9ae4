"""Temporal compressive sensing (TCS): masks, encoder, container, decoders.

- :mod:`emcs.tcs.masks`     -- deterministic, versioned binary masks
- :mod:`emcs.tcs.physics`   -- forward model Y = sum_b C_b X_b and its adjoint
- :mod:`emcs.tcs.operator`  -- the TCS operator: exact encoder kernel, forward model, mask sums
- :mod:`emcs.tcs.encode`    -- streaming, multiplication-free encoder (``emcs encode``)
- :mod:`emcs.tcs.container` -- the versioned ``.npz`` measurement container (package)
- :mod:`emcs.tcs.gaptv`     -- GAP-TV decoder in torch (CPU/CUDA)
- :mod:`emcs.tcs.decode`    -- ``emcs decode``: scaling, decoder choice, streaming output
- :mod:`emcs.tcs.nets`      -- neural decoders
- :mod:`emcs.tcs.demo`      -- ``emcs demo``

The names below are imported lazily, so ``import emcs.tcs`` stays cheap:

>>> from emcs.tcs import encode_stack, load_container, decode_container, gap_tv  # doctest: +SKIP
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "encode_stack": "emcs.tcs.encode",
    "encode_group": "emcs.tcs.operator",
    "load_container": "emcs.tcs.container",
    "open_container": "emcs.tcs.container",
    "validate": "emcs.tcs.container",
    "Container": "emcs.tcs.container",
    "decode_container": "emcs.tcs.decode",
    "gap_tv": "emcs.tcs.gaptv",
    "naive_estimate": "emcs.tcs.gaptv",
    "make_masks": "emcs.tcs.masks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'emcs.tcs' has no attribute {name!r}")

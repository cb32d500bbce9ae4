"""Hardware-like TCS coding masks for training and benchmarks.

``emcs encode`` draws i.i.d. Bernoulli masks (:mod:`emcs.tcs.masks`), but real
temporal coding hardware often cannot: a coded aperture translated by a piezo
shifts one pattern by a row per frame (CACTI; Llull et al., Opt. Express 21:10526,
2013), a DMD is binned into super-pixels, a coded-exposure CMOS sensor opens whole
rows or columns together. A user passes such masks explicitly (``--mask FILE``),
so the decoders must serve them. :func:`structured_masks` makes them, one kind at
a time, at a given density:

``"bernoulli"``
    Independent pixels (what ``emcs encode`` generates).
``"shifted"``
    One random pattern translated by one row (or column) per frame.
``"blocks2"``, ``"blocks4"``
    Independent k x k super-pixels.
``"rows"``, ``"cols"``
    Each frame opens a random subset of whole rows (columns), mixed with
    i.i.d. pixels so that no pixel is closed in every frame of a group.
``"xor"``
    Exclusive-or of a random row code and a random column code per frame.

Examples
--------
>>> import numpy as np
>>> C = structured_masks(np.random.default_rng(0), "shifted", 8, (32, 48), 0.3)
>>> C.shape, C.dtype, bool(abs(C.mean() - 0.3) < 0.05)
((8, 32, 48), dtype('bool'), True)
>>> bool((C[1, :-1] == C[0, 1:]).all() or (C[1, :, :-1] == C[0, :, 1:]).all())
True
"""

from __future__ import annotations

import numpy as np

MASK_KINDS = ("bernoulli", "shifted", "blocks2", "blocks4", "rows", "cols", "xor")
#: kinds the TCS training draws; "xor" and "blocks4" are kept for held-out evaluation
TRAIN_MASK_KINDS = ("bernoulli", "shifted", "blocks2", "rows", "cols")


def structured_masks(rng: np.random.Generator, kind: str, B: int, shape: tuple[int, int],
                     density: float) -> np.ndarray:
    """Binary masks (B, H, W) of one kind (see the module docstring) at about ``density``."""
    H, W = shape
    if kind == "bernoulli":
        return rng.random((B, H, W)) < density
    if kind == "shifted":
        if rng.random() < 0.5:
            base = rng.random((H + B, W)) < density
            return np.stack([base[b:b + H] for b in range(B)])
        base = rng.random((H, W + B)) < density
        return np.stack([base[:, b:b + W] for b in range(B)])
    if kind in ("blocks2", "blocks4"):
        k = int(kind[-1])
        coarse = rng.random((B, -(-H // k), -(-W // k))) < density
        return coarse.repeat(k, 1).repeat(k, 2)[:, :H, :W]
    if kind in ("rows", "cols"):
        # half the open probability from whole lines, half from single pixels
        p_line = 1 - np.sqrt(1 - density)
        n = H if kind == "rows" else W
        lines = rng.random((B, n)) < p_line
        lines = lines[:, :, None] if kind == "rows" else lines[:, None, :]
        return lines | (rng.random((B, H, W)) < p_line)
    if kind == "xor":
        # P(r xor c) = 2 p (1 - p) = density for p below 0.5; densities above 0.5 invert it
        d = min(density, 1 - density)
        p = (1 - np.sqrt(1 - 2 * d)) / 2
        m = (rng.random((B, H, 1)) < p) ^ (rng.random((B, 1, W)) < p)
        return ~m if density > 0.5 else m
    raise ValueError(f"mask kind must be one of {', '.join(MASK_KINDS)}, got {kind!r}")

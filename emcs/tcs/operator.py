"""The TCS measurement operator: one object for the forward model, its adjoint and the mask sums.

Temporal compressive sensing (Llull et al., Opt. Express 2013; Yuan, Liu & Brady,
IEEE Signal Process. Mag. 2021) codes B frames X_b (b = 0 .. B-1) with binary
masks C_b into one measurement::

    forward:   Y  = A(X)  = sum_b C_b * X_b                 (..., H, W)
    adjoint:   A^T(Y)     = [C_b * Y]_b                      (..., B, H, W)
    A A^T      = diag(R),   R = sum_b C_b^2 (= sum_b C_b)
    normalised Ybar = Y / R   (R := 1 where no mask is open)

A group with fewer than B frames (the last one of a movie) used the first n
masks; every method takes that ``n`` (or infers it from the frame axis), and
:meth:`TcsOperator.group` gives the operator of such a group.

API
---
Constructors
    ``TcsOperator.from_masks(masks)`` -- explicit (B, H, W) binary masks;
    ``TcsOperator.generated(seed, B, frame_shape, density=0.5)`` -- the
    counter-based masks of :func:`emcs.tcs.masks.make_masks`;
    ``TcsOperator.from_meta(mask, packed_mask, B, frame_shape)`` -- from a
    container's ``meta["mask"]`` and its bit-packed explicit mask (or None).
Attributes
    ``B``, ``frame_shape``, ``kind`` ("generated" / "explicit"), ``seed``,
    ``density``, ``meta`` (the container's mask metadata).
Masks
    ``masks(n=None, rows=None, cols=None)`` -- bool (n, h, w);
    ``group(n)`` -- the operator of a group of n frames;
    ``tensor(n=None, device=None, dtype=None)`` -- float masks as a torch tensor.
Forward model
    ``encode(frames, out=None, scratch=None)`` -- the encoder's exact,
    multiplication-free path (numpy; integer sums exact, floats in float64);
    ``forward(x)`` -- float path, numpy or torch, ``x`` (..., n, H, W);
    ``adjoint(y, n=None)``.
Mask sums (cached per group size; generated masks are summed in row blocks)
    ``open_count(n=None)`` -- open masks per pixel, zeros kept (uint8/uint16);
    ``mask_sum(n=None)`` -- the same with 0 -> 1 (safe to divide by);
    ``normalized(y, n=None)`` -- Ybar = Y / R;
    ``measurement_scale(y, n=None)`` -- the networks' intensity scale of one
    measurement; ``scale_measurements(y, value_range, n=None)`` -- Y of frames
    scaled to [0, 1].

The module functions :func:`forward`, :func:`adjoint`, :func:`mask_sum`,
:func:`normalized_measurement` and :func:`measurement_scale` are the same
model on arrays or tensors of masks (batched masks of training samples, mask
tiles inside GAP-TV and the networks); :func:`encode_group`,
:func:`accumulator_dtype` and :func:`bit_masks` are the encoder's kernel (:mod:`emcs.tcs.kernel`).
Only numpy is imported here; torch is imported when a tensor is asked for.
The operator is plain data and pickles (caches of full masks, bit patterns
and tensors are dropped; mask sums travel).

Examples
--------
>>> import numpy as np
>>> op = TcsOperator.generated(seed=7, B=4, frame_shape=(3, 5))
>>> x = np.arange(4 * 3 * 5, dtype=np.uint8).reshape(4, 3, 5)
>>> y = op.encode(x)                                  # exact integer sums
>>> bool((y == op.forward(x.astype(np.float64))).all())
True
>>> bool((op.encode(x[:2]) == op.group(2).encode(x[:2])).all())   # short last group
True
>>> op.open_count(2).dtype, op.mask_sum().min() >= 1
(dtype('uint8'), np.True_)
>>> import pickle
>>> bool((pickle.loads(pickle.dumps(op)).masks() == op.masks()).all())
True
"""

from __future__ import annotations

import numpy as np

from emcs.tcs.kernel import (
    accumulator_dtype,
    bit_masks,
    bits_dtype,
    encode_group,
    generated_patterns,
    smallest_int_dtype,
    stored_dtype,
    sum_dtype,
)
from emcs.tcs.masks import MASK_ALGORITHM, make_masks, pack_masks, unpack_masks

#: bytes of generated mask rows made at once when summing masks (bounded memory for 4k frames)
_CHUNK_BYTES = 1 << 24
#: smallest intensity scale of a measurement (keeps dark measurements finite)
MIN_SCALE = 1e-3


# ----------------------------------------------------------------------------- array functions
def forward(x, masks):
    """Y = sum_b C_b * X_b over the frame axis (-3); numpy arrays or torch tensors."""
    return (x * masks).sum(-3)


def adjoint(y, masks):
    """A^T Y = [C_b * Y]_b: shape (..., B, H, W); numpy arrays or torch tensors."""
    return y[..., None, :, :] * masks


def mask_sum(masks):
    """R = sum_b C_b^2 over axis -3, with zeros replaced by 1 so that divisions are safe."""
    r = (masks * masks).sum(-3)
    return r + (r == 0)


def normalized_measurement(y, masks):
    """Ybar = Y / R: a per-pixel average over the open frames (numpy or torch)."""
    return y / mask_sum(masks)


def measurement_scale(y, masks):
    """Intensity scale s of measurements: the mean of Ybar over the last two axes (>= 1e-3).

    The networks see ``Y / s`` (frames with a mean of about 1) and their output
    is multiplied back by s, so they do not depend on how the caller scaled
    the frames. A (H, W) numpy measurement gives a float; batches give one
    scale per measurement (a tensor for tensors).
    """
    return _scale_of(normalized_measurement(y, masks))


def _scale_of(ybar):
    """max(mean of each (H, W) plane, MIN_SCALE): a float for one numpy plane."""
    if isinstance(ybar, np.ndarray):
        if ybar.ndim == 2:
            return max(float(ybar.mean()), MIN_SCALE)
        return np.maximum(ybar.mean(axis=(-2, -1)), MIN_SCALE)
    return ybar.mean(dim=(-2, -1)).clamp_min(MIN_SCALE)


def open_count(masks: np.ndarray) -> np.ndarray:
    """Open masks per pixel, ``S = sum_b C_b``, zeros kept (uint8 for B < 256, else uint16).

    Unlike :func:`mask_sum` (made safe for division), pixels where no mask was
    open stay 0: the predictive coder needs to know them.

    Examples
    --------
    >>> open_count(np.array([[[1, 0]], [[1, 1]]], bool)).tolist()
    [[2, 1]]
    """
    masks = np.asarray(masks)
    return masks.sum(0, dtype=np.uint8 if masks.shape[0] < 256 else np.uint16)


# ----------------------------------------------------------------------------- the operator
def _strip_rows(shape: tuple[int, ...], itemsize: int) -> int:
    """Rows of a (..., H, W) array whose ``itemsize``-byte values fill about :data:`_CHUNK_BYTES`
    (at least one row)."""
    row_bytes = itemsize * int(np.prod(shape[:-2], dtype=np.int64)) * shape[-1]
    return max(1, _CHUNK_BYTES // max(1, row_bytes))


class TcsOperator:
    """The TCS forward model of one mask set (see the module docstring for the API).

    Build it with :meth:`from_masks`, :meth:`generated` or :meth:`from_meta`,
    not with the constructor.
    """

    def __init__(self, meta: dict, B: int, frame_shape: tuple[int, int],
                 packed: np.ndarray | None = None):
        self.meta = dict(meta)
        self.B = int(B)
        self.frame_shape = (int(frame_shape[0]), int(frame_shape[1]))
        self.packed = packed
        self._counts: dict[int, np.ndarray] = {}
        self._reset_caches()

    # -- construction
    @classmethod
    def from_masks(cls, masks: np.ndarray, source: str | None = None) -> TcsOperator:
        """Explicit (B, H, W) binary masks (anything numpy reads as 0/1 or bool)."""
        masks = np.asarray(masks, dtype=bool)
        if masks.ndim != 3 or 0 in masks.shape:
            raise ValueError(f"masks must be (B, H, W), got shape {masks.shape}")
        meta = {"kind": "explicit", "shape": [int(s) for s in masks.shape],
                "density": float(masks.mean()), "source": source}
        op = cls(meta, masks.shape[0], masks.shape[1:], pack_masks(masks))
        op._full = masks
        return op

    @classmethod
    def generated(cls, seed: int, B: int, frame_shape: tuple[int, int],
                  density: float = 0.5) -> TcsOperator:
        """The masks :func:`emcs.tcs.masks.make_masks` makes from ``seed`` (regenerated on demand)."""
        make_masks(seed, B, 1, 1, density, frames=range(0))  # validates seed, B and density
        meta = {"kind": "generated", "algorithm": MASK_ALGORITHM, "seed": int(seed),
                "density": float(density)}
        return cls(meta, B, frame_shape)

    @classmethod
    def from_meta(cls, mask: dict, packed_mask: np.ndarray | None, B: int,
                  frame_shape: tuple[int, int]) -> TcsOperator:
        """From a container's ``meta["mask"]`` and bit-packed explicit mask (None if generated)."""
        if mask["kind"] == "generated":
            return cls.generated(int(mask["seed"]), B, frame_shape, float(mask["density"]))
        return cls(mask, B, frame_shape, np.asarray(packed_mask, dtype=np.uint8))

    # -- plain data for pickling: full masks, bit patterns and tensors are rebuilt on demand
    def _reset_caches(self) -> None:
        self._full: np.ndarray | None = None
        self._patterns: dict[np.dtype, np.ndarray] = {}
        self._tensors: dict = {}
        self._groups: dict[int, TcsOperator] = {}

    def __getstate__(self) -> dict:
        return {"meta": self.meta, "B": self.B, "frame_shape": self.frame_shape,
                "packed": self.packed, "counts": self._counts}

    def __setstate__(self, state: dict) -> None:
        self.meta, self.B, self.frame_shape = state["meta"], state["B"], state["frame_shape"]
        self.packed, self._counts = state["packed"], state["counts"]
        self._reset_caches()

    def __repr__(self) -> str:
        H, W = self.frame_shape
        what = f"seed={self.seed}" if self.kind == "generated" else "explicit"
        return f"TcsOperator(B={self.B}, frame_shape=({H}, {W}), {what}, density={self.density:.3g})"

    # -- description
    @property
    def kind(self) -> str:
        """``"generated"`` (seeded masks) or ``"explicit"`` (stored masks)."""
        return self.meta["kind"]

    @property
    def seed(self) -> int | None:
        return self.meta.get("seed")

    @property
    def density(self) -> float:
        """Fraction of open mask pixels (requested for generated masks, measured for explicit)."""
        return float(self.meta["density"])

    def _n(self, n: int | None) -> int:
        n = self.B if n is None else int(n)
        if not 1 <= n <= self.B:
            raise ValueError(f"a group has 1 .. {self.B} frames, got {n}")
        return n

    # -- masks
    def masks(self, n: int | None = None, rows: tuple[int, int] | None = None,
              cols: tuple[int, int] | None = None) -> np.ndarray:
        """The first ``n`` (default B) boolean masks, (n, H, W), or a spatial block of them.

        The full masks are made once and kept; a block (``rows``/``cols``) of
        generated masks is made on its own (bounded memory) unless the full
        masks are already kept.
        """
        n = self._n(n)
        H, W = self.frame_shape
        if self._full is None and self.kind == "generated" and (rows is not None or cols is not None):
            return make_masks(self.seed, self.B, H, W, self.density, frames=range(n),
                              rows=rows, cols=cols)
        if self._full is None:
            if self.kind == "generated":
                self._full = make_masks(self.seed, self.B, H, W, self.density)
            else:
                self._full = unpack_masks(self.packed, (self.B, H, W))
        r0, r1 = (0, H) if rows is None else rows
        c0, c1 = (0, W) if cols is None else cols
        return self._full[:n, r0:r1, c0:c1]

    def group(self, n: int) -> TcsOperator:
        """The operator of a group of ``n`` frames (it used the first ``n`` masks); cached."""
        n = self._n(n)
        if n == self.B:
            return self
        if n not in self._groups:
            if self.kind == "generated":
                # the masks do not depend on B: the first n of B are the n of a B = n request
                op = TcsOperator(self.meta, n, self.frame_shape)
            else:
                op = TcsOperator(self.meta, n, self.frame_shape, pack_masks(self.masks(n)))
            if n in self._counts:
                op._counts[n] = self._counts[n]
            self._groups[n] = op
        return self._groups[n]

    def tensor(self, n: int | None = None, device=None, dtype=None):
        """The first ``n`` masks as a 0/1 torch tensor (default float32 on the CPU); cached."""
        import torch

        n = self._n(n)
        device = torch.device("cpu") if device is None else torch.device(device)
        dtype = torch.float32 if dtype is None else dtype
        key = (n, device, dtype)
        if key not in self._tensors:
            self._tensors[key] = torch.from_numpy(self.masks(n)).to(device=device, dtype=dtype)
        return self._tensors[key]

    def _masks_like(self, x, n: int):
        """Masks of ``n`` frames of the same kind as ``x`` (bool numpy, or a tensor on x's device)."""
        if isinstance(x, np.ndarray):
            return self.masks(n)
        return self.tensor(n, x.device, x.dtype)

    # -- forward model
    def patterns(self, dtype, threads: int = 1) -> np.ndarray:
        """AND-patterns of all B masks for pixels of ``dtype`` (:func:`bit_masks`); cached.

        Generated masks are made in row blocks by ``threads`` threads straight
        into the patterns (the boolean masks are not kept), with the mask sum
        of a full group on the way.
        """
        dtype = np.dtype(np.uint8 if np.dtype(dtype) == bool else dtype)
        bits = bits_dtype(dtype)
        if bits not in self._patterns:
            if self.kind == "generated" and self._full is None:
                self._patterns[bits], counts = generated_patterns(
                    lambda rows: self.masks(rows=rows), self.B, self.frame_shape, dtype, threads)
                self._counts.setdefault(self.B, counts)
            else:
                self._patterns[bits] = bit_masks(self.masks(), dtype)
        return self._patterns[bits]

    def encode(self, frames: np.ndarray, *, out: np.ndarray | None = None,
               scratch: np.ndarray | None = None) -> np.ndarray:
        """The encoder's exact sum of (n, H, W) frames with the first n masks (:func:`encode_group`)."""
        frames = np.asarray(frames)
        return encode_group(frames, self.patterns(frames.dtype), out=out, scratch=scratch)

    def forward(self, x):
        """Float forward model of frames ``x`` (..., n, H, W) (numpy or torch), first n masks."""
        return forward(x, self._masks_like(x, x.shape[-3]))

    def adjoint(self, y, n: int | None = None):
        """A^T Y of measurements ``y`` (..., H, W): (..., n, H, W) (numpy or torch)."""
        return adjoint(y, self._masks_like(y, self._n(n)))

    # -- mask sums
    def open_count(self, n: int | None = None) -> np.ndarray:
        """Open masks per pixel of a group of ``n`` frames, zeros kept (:func:`open_count`); cached.

        Generated masks are made in row blocks, so memory stays bounded for large frames.
        """
        n = self._n(n)
        if n in self._counts:
            return self._counts[n]
        H, W = self.frame_shape
        if self.kind != "generated" or self._full is not None:
            counts = open_count(self.masks(n))
        else:
            counts = np.empty((H, W), np.uint8 if n < 256 else np.uint16)
            rows = _strip_rows((n, H, W), 1)  # one byte per mask value
            for r0 in range(0, H, rows):
                r1 = min(H, r0 + rows)
                counts[r0:r1] = open_count(self.masks(n, rows=(r0, r1)))
        self._counts[n] = counts
        return counts

    def mask_sum(self, n: int | None = None) -> np.ndarray:
        """R = open masks per pixel with 0 -> 1 (safe to divide by), uint8/uint16."""
        counts = self.open_count(n)
        return counts + (counts == 0).astype(counts.dtype)

    def normalized(self, y, n: int | None = None):
        """Ybar = Y / R of measurements ``y`` (..., H, W) (numpy or torch)."""
        r = self.mask_sum(n)
        if not isinstance(y, np.ndarray):
            import torch

            r = torch.from_numpy(r.astype(np.float32)).to(device=y.device)
        return y / r

    def measurement_scale(self, y, n: int | None = None):
        """The networks' intensity scale of measurements ``y`` (:func:`measurement_scale`)."""
        if isinstance(y, np.ndarray):  # Y / R in float64 (numpy would keep float32), into one array
            r = self.mask_sum(n)
            ybar = np.empty(np.broadcast_shapes(y.shape, r.shape), np.float64)
            return _scale_of(np.divide(y, r, out=ybar, dtype=np.float64))
        return _scale_of(self.normalized(y, n))

    def scale_measurements(self, y: np.ndarray, value_range, n: int | None = None) -> np.ndarray:
        """Measurements of frames scaled to [0, 1]: ``(Y - lo * S) / (hi - lo)`` as float32.

        ``value_range`` = (lo, hi) of the input pixels, ``S`` = :meth:`open_count`. Computed in
        float64 a strip of rows at a time (the same arithmetic per pixel; the float64
        temporaries of a whole 4096^2 frame would be ~0.5 GB).
        """
        lo, hi = value_range
        span = (hi - lo) or 1.0
        y = np.asarray(y)
        counts = self.open_count(n)
        out = np.empty(np.broadcast_shapes(y.shape, counts.shape), np.float32)
        rows = _strip_rows(out.shape, 8)
        for r0 in range(0, out.shape[-2], rows):
            block = np.s_[..., r0:r0 + rows, :]
            s = counts[block].astype(np.int64)
            out[block] = (np.asarray(y[block], dtype=np.float64) - lo * s) / span
        return out


__all__ = [
    "MIN_SCALE",
    "TcsOperator",
    "accumulator_dtype",
    "adjoint",
    "bit_masks",
    "bits_dtype",
    "encode_group",
    "forward",
    "mask_sum",
    "measurement_scale",
    "normalized_measurement",
    "open_count",
    "smallest_int_dtype",
    "stored_dtype",
    "sum_dtype",
]

"""Streaming statistics of a stack (min, max, mean, standard deviation), in bounded memory."""

from __future__ import annotations

import numpy as np

from emcs.io.stack import Stack

CHUNK_BYTES = 64 * 2**20


def stack_stats(stack: Stack, chunk_bytes: int = CHUNK_BYTES) -> dict:
    """Minimum, maximum, mean and standard deviation of every pixel of ``stack``.

    Frames are read in chunks of about ``chunk_bytes`` (at least one frame), so
    memory stays bounded whatever the stack size; sums are accumulated in
    float64 per chunk and combined with Chan et al.'s pairwise update
    (Chan, Golub & LeVeque, "Algorithms for computing the sample variance",
    The American Statistician 37, 242-247, 1983), which stays accurate for
    long movies. This is what IMOD's ``header`` prints as min / max / mean.

    Returns
    -------
    dict
        ``min``, ``max``, ``mean``, ``std`` (floats; NaN and infinite pixels
        are left out and counted in ``nonfinite``), ``n_pixels``.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from emcs.io import open_stack, write_stack
    >>> p = os.path.join(tempfile.mkdtemp(), "a.npy")
    >>> write_stack(p, np.arange(24, dtype=np.uint16).reshape(2, 3, 4))
    >>> with open_stack(p) as s:
    ...     st = stack_stats(s)
    >>> st["min"], st["max"], st["mean"]
    (0.0, 23.0, 11.5)
    """
    frame_bytes = max(1, stack.frame_shape[0] * stack.frame_shape[1] * stack.dtype.itemsize)
    per_chunk = max(1, int(chunk_bytes // frame_bytes))
    n, mean, m2 = 0, 0.0, 0.0
    lo, hi, nonfinite = np.inf, -np.inf, 0
    for chunk in stack.iter_chunks(per_chunk):
        values = chunk.reshape(-1)
        if values.dtype.kind == "f":
            finite = np.isfinite(values)
            if not finite.all():
                nonfinite += int(values.size - finite.sum())
                values = values[finite]
        if values.size == 0:
            continue
        values = values.astype(np.float64)
        k = values.size
        c_mean = float(values.mean())
        c_m2 = float(((values - c_mean) ** 2).sum())
        delta = c_mean - mean
        total = n + k
        mean += delta * k / total
        m2 += c_m2 + delta * delta * n * k / total
        n = total
        lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
    if n == 0:
        nan = float("nan")
        return {"min": nan, "max": nan, "mean": nan, "std": nan, "n_pixels": 0,
                "nonfinite": nonfinite}
    return {"min": lo, "max": hi, "mean": mean, "std": float(np.sqrt(m2 / n)), "n_pixels": n,
            "nonfinite": nonfinite}

"""Overlap-and-blend tiling: run a fully convolutional network on any frame size.

Large frames are cut into overlapping tiles; each tile's output is weighted by
a window that is zero on the outer quarter of the overlap at its interior edges
(where convolutional outputs are least reliable, since they lack context), then
ramps up to 1, and stays 1 along the image border;
overlapping outputs are averaged with those weights. Memory is bounded by the
tile size, the result has no seams, and on frames no larger than one tile the
result is exactly the untiled one.

The networks (TCS, DLSS) and GAP-TV (:mod:`emcs.tcs.gaptv`, which spreads its
tiles evenly and ramps over the whole overlap: ``even=True, margin=0``) use it.
The input may be built tile by tile (an object with ``shape`` and slicing, see
:func:`tiled_apply`) and the output may be a caller's buffer (``out=``), so that
a large frame needs no full-size input tensor and no second full-size output.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator


def _starts(length: int, tile: int, overlap: int, even: bool = False) -> list[int]:
    """Tile starts: every ``tile - overlap`` plus one flush with the end, or (``even``)
    the fewest tiles with at least ``overlap`` of overlap, spread evenly."""
    if length <= tile:
        return [0]
    if even:
        n = math.ceil((length - overlap) / (tile - overlap))
        stride = (length - tile) / (n - 1)
        return sorted({int(round(i * stride)) for i in range(n)})
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return sorted(set(starts))


def fitted_tile(length: int, tile: int, overlap: int) -> int:
    """The smallest tile edge that covers ``length`` with as many tiles as ``tile`` needs.

    With a fixed tile the last tile sits flush with the end and overlaps its
    neighbour by more than ``overlap``; shrinking the tiles to
    ``ceil((length + (n - 1) * overlap) / n)`` for the same count ``n`` spends
    less work on overlap (4096 px, tile 768, overlap 48: 723 px, the computed
    area of a 4096 x 4096 frame drops from 1.27x to 1.12x).

    >>> fitted_tile(4096, 768, 48), fitted_tile(100, 512, 48)
    (723, 100)
    """
    if length <= tile:
        return length
    n = math.ceil((length - overlap) / (tile - overlap))
    return math.ceil((length + (n - 1) * overlap) / n)


def _ramp(n: int, overlap: int, ramp_start: bool, ramp_end: bool, torch, device, margin: int):
    w = torch.ones(n, device=device)
    if overlap > 0:
        # zero weight on the outermost `margin` pixels of the overlap (no context there),
        # then a linear ramp up to 1: outputs near a tile's interior edge are discarded
        r = torch.clamp(
            (torch.arange(overlap, device=device, dtype=torch.float32) - margin + 0.5)
            / (overlap - margin),
            min=0.0,
        )
        k = min(overlap, n)
        if ramp_start:
            w[:k] = torch.minimum(w[:k], r[:k])
        if ramp_end:
            w[n - k :] = torch.minimum(w[n - k :], r[:k].flip(0))
    return w


def tiled_apply(
    fn: Callable,
    x,
    tile: int = 256,
    overlap: int = 32,
    scale: int = 1,
    batch: int = 4,
    out_device=None,
    *,
    margin: int | None = None,
    even: bool = False,
    fit: bool = False,
    out=None,
    out_zeroed: bool = False,
    workers: int = 1,
):
    """Apply ``fn`` to overlapping tiles of ``x`` and blend the results.

    Parameters
    ----------
    fn : callable
        Maps a tensor (n, C, h, w) to (n, C', h*scale, w*scale).
    x : torch.Tensor or tile source
        Input (N, C, H, W): a tensor, or any object with ``shape`` and
        ``device`` whose ``x[n0:n1, :, y0:y1, x0:x1]`` returns that block as a
        tensor (an input built tile by tile, without a full-size copy).
    tile : int
        Tile edge in input pixels; frames not larger than ``tile`` run whole.
    overlap : int
        Overlap between neighbouring tiles in input pixels (< tile).
    scale : int
        Output/input size ratio (2 for 2x super-resolution).
    batch : int
        Tiles per call of ``fn``.
    out_device : torch.device, optional
        Where the blended output is accumulated (default: x's device).
    margin : int, optional
        Pixels of the overlap at a tile's interior edge that get zero weight
        (default a quarter of the overlap; 0 ramps over the whole overlap).
    even : bool
        Spread the fewest tiles evenly instead of stepping by ``tile - overlap``.
    fit : bool
        Shrink the tiles along each axis to :func:`fitted_tile` (as many tiles,
        less overlap work).
    out : torch.Tensor, optional
        (N, C', H*scale, W*scale) float32 buffer on ``out_device`` to write
        the result into (it is overwritten and returned): no second
        full-size array.
    out_zeroed : bool
        ``out`` already holds zeros (e.g. a fresh ``np.zeros``), so it is not zeroed again:
        its pages are then first touched as the tiles land, while the workers compute, not
        all at once before them (a 640 MB buffer took 4.7 s to zero on a 2-core VM).
    workers : int
        Batches of tiles computed at once, each in its own thread (the caller
        sets torch's intra-op threads, e.g. to 1); the blend stays in order, so
        the result does not depend on ``workers``. Memory: ``workers`` tiles'
        activations.

    Returns
    -------
    torch.Tensor
        (N, C', H*scale, W*scale), float32.

    Examples
    --------
    >>> import torch
    >>> x = torch.rand(1, 1, 100, 130)
    >>> y = tiled_apply(lambda t: 2 * t, x, tile=48, overlap=8)
    >>> bool(torch.allclose(y, 2 * x))
    True
    """
    import torch

    if len(x.shape) != 4:
        raise ValueError(f"tiled_apply needs (N, C, H, W), got shape {tuple(x.shape)}")
    if not 0 <= overlap < tile:
        raise ValueError("need 0 <= overlap < tile")
    N, _, H, W = x.shape
    out_device = x.device if out_device is None else out_device
    if H <= tile and W <= tile:
        with torch.no_grad():
            res = fn(x[:, :, :H, :W]).float().to(out_device)
        return res if out is None else out.copy_(res)
    th, tw = (fitted_tile(H, tile, overlap), fitted_tile(W, tile, overlap)) if fit else (tile, tile)
    ys, xs = _starts(H, th, overlap, even), _starts(W, tw, overlap, even)
    th, tw = min(th, H), min(tw, W)
    boxes = [(y0, x0) for y0 in ys for x0 in xs]
    if out is not None and not out_zeroed:
        out.zero_()
    norm = torch.zeros(1, 1, H * scale, W * scale, device=out_device)
    s, ov = scale, overlap * scale
    m = ov // 4 if margin is None else margin * s  # zero-weight margin in output pixels

    def compute(n: int, chunk: list) -> torch.Tensor:
        with torch.no_grad():  # grad mode is per thread
            tiles = torch.cat([x[n : n + 1, :, y0 : y0 + th, x0 : x0 + tw] for y0, x0 in chunk])
            return fn(tiles).float().to(out_device)

    jobs = [(n, boxes[i : i + batch]) for n in range(N) for i in range(0, len(boxes), batch)]
    with torch.no_grad():
        for (n, chunk), res in zip(jobs, _ordered_map(compute, jobs, workers), strict=True):
            if out is None:
                out = torch.zeros(N, res.shape[1], H * s, W * s, device=out_device)
            for k, (y0, x0) in enumerate(chunk):
                wy = _ramp(th * s, ov, y0 > 0, y0 + th < H, torch, out_device, m)
                wx = _ramp(tw * s, ov, x0 > 0, x0 + tw < W, torch, out_device, m)
                w = wy[:, None] * wx[None, :]
                out[n, :, y0 * s : (y0 + th) * s, x0 * s : (x0 + tw) * s] += res[k] * w
                if n == 0:
                    norm[0, 0, y0 * s : (y0 + th) * s, x0 * s : (x0 + tw) * s] += w
    return out.div_(norm)


def _ordered_map(fn: Callable, jobs: Iterable[tuple], workers: int) -> Iterator:
    """``fn(*job)`` for each job, in order; with ``workers`` > 1 that many run at once in
    threads (no more are started than are being waited for)."""
    if workers <= 1:
        yield from (fn(*job) for job in jobs)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        for job in jobs:
            pending.append(pool.submit(fn, *job))
            if len(pending) >= workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def pad_to_multiple(x, multiple: int, mode: str = "reflect"):
    """Pad (N, C, H, W) at the bottom/right to multiples of ``multiple``.

    Returns the padded tensor and the original (H, W) so the caller can crop
    the network's output back: ``y[..., :H*scale, :W*scale]``.
    """
    import torch.nn.functional as F

    H, W = x.shape[-2:]
    ph, pw = (-H) % multiple, (-W) % multiple
    if ph or pw:
        if mode == "reflect" and (ph >= H or pw >= W):
            mode = "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (H, W)

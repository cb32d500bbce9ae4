"""Training data from a user's own files (``emcs train ... --data``).

- :class:`FolderClips` (TCS): random crops of B consecutive frames of the movies in a
  folder, each movie normalised once by its 0.1 / 99.9 percentiles.
- :func:`user_crop_source` (DLSS): random crops of the full-resolution scans in a
  folder, each frame min-max scaled, optionally at other magnifications
  (:func:`zoomed_crop`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

from emcs.errors import EmcsError
from emcs.simulate.render import percentile_range

__all__ = ["MOVIE_SUFFIXES", "FolderClips", "user_crop_source", "zoomed_crop"]

MOVIE_SUFFIXES = (".tif", ".tiff", ".mrc", ".mrcs", ".npy")


class FolderClips:
    """Random crops of B consecutive frames from the movies in a folder.

    Each movie is normalised once with its 0.1 / 99.9 percentiles (of a few
    sampled frames) so frames lie in about [0, 1].
    """

    def __init__(self, folder: str | Path):
        from emcs.io import open_stack

        folder = Path(folder)
        self.folder = folder
        if not folder.is_dir():
            raise EmcsError("not a folder of training movies", folder)
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in MOVIE_SUFFIXES)
        if not paths:
            raise EmcsError(f"no movies ({', '.join(MOVIE_SUFFIXES)}) in this folder", folder)
        self.stacks = []
        self.norms = []
        for p in paths:
            st = open_stack(p)
            T, H, W = st.shape
            if T < 2:
                raise EmcsError("a training movie needs at least 2 frames", p)
            idx = np.linspace(0, T - 1, min(T, 5)).astype(int)
            sample = np.stack([np.asarray(st[int(i)], dtype=np.float32) for i in idx])
            lo, span = percentile_range(sample, 0.1, 99.9)
            self.stacks.append(st)
            self.norms.append((float(lo), float(span)))

    def check(self, B: int, size: int) -> None:
        """Keep only movies with at least B frames of size x size; error if none is left."""
        keep = [i for i, st in enumerate(self.stacks)
                if st.shape[0] >= B and st.shape[1] >= size and st.shape[2] >= size]
        if not keep:
            raise EmcsError(f"no movie here has {B} frames of at least {size}x{size} pixels "
                            "(use a smaller --B or --patch)", self.folder)
        self.stacks = [self.stacks[i] for i in keep]
        self.norms = [self.norms[i] for i in keep]

    def clip(self, rng: np.random.Generator, B: int, size: int) -> np.ndarray:
        """B consecutive frames (B, size, size) from a random movie and position."""
        k = int(rng.integers(len(self.stacks)))
        st, (lo, span) = self.stacks[k], self.norms[k]
        T, H, W = st.shape
        t0 = int(rng.integers(0, T - B + 1))
        i0 = int(rng.integers(0, H - size + 1))
        j0 = int(rng.integers(0, W - size + 1))
        frames = np.asarray(st.read(t0, t0 + B), dtype=np.float32)[:, i0 : i0 + size, j0 : j0 + size]
        frames = (frames - lo) / span
        if rng.random() < 0.5:
            frames = frames[:, :, ::-1]
        if rng.random() < 0.5:
            frames = frames[::-1]
        return np.ascontiguousarray(frames)


def zoomed_crop(rng: np.random.Generator, frame: np.ndarray, size: int, zoom: tuple[float, float]) -> np.ndarray:
    """A random ``size`` x ``size`` crop of ``frame`` at a magnification drawn log-uniformly in ``zoom``.

    A magnification z > 1 enlarges a (size/z)-pixel region (cubic spline), z < 1
    shrinks a larger one after an anti-aliasing Gaussian (sigma 0.4/z): the same
    structures at other sizes, as a microscope would record them at another
    magnification. ``zoom = (1, 1)`` is a plain crop and draws no extra random number.

    Examples
    --------
    >>> f = np.random.default_rng(0).random((100, 90)).astype(np.float32)
    >>> zoomed_crop(np.random.default_rng(1), f, 32, (0.5, 2.0)).shape
    (32, 32)
    """
    lo, hi = zoom
    z = 1.0 if lo == hi == 1.0 else math.exp(rng.uniform(math.log(lo), math.log(hi)))
    src = int(round(size / z)) if z != 1.0 else size
    src = max(4, min(src, *frame.shape))
    y = int(rng.integers(frame.shape[0] - src + 1))
    x = int(rng.integers(frame.shape[1] - src + 1))
    region = frame[y : y + src, x : x + src]
    if src == size:
        return region
    if src > size:  # shrinking: low-pass first, so the smaller image is not aliased
        region = ndimage.gaussian_filter(region, 0.4 * src / size, mode="reflect")
    out = ndimage.zoom(region, size / src, order=3, mode="reflect", grid_mode=True)[:size, :size]
    if out.shape != (size, size):  # rounding in ndimage.zoom: pad the last row/column
        out = np.pad(out, ((0, size - out.shape[0]), (0, size - out.shape[1])), mode="edge")
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def user_crop_source(folder: str | os.PathLike, patch: int, zoom: tuple[float, float] = (1.0, 1.0)) -> Callable:
    """Random ``patch`` crops of the full scans in ``folder`` (each frame min-max scaled),
    at a magnification drawn in ``zoom`` (:func:`zoomed_crop`)."""
    from emcs.io import open_stack

    folder = Path(folder)
    if not folder.is_dir():
        raise EmcsError("data must be a folder of full-resolution scans", folder, param="data")
    frames = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        try:
            stack = open_stack(p)
        except EmcsError:
            continue
        with stack:
            if min(stack.frame_shape) < patch:
                continue
            for i in range(min(stack.n_frames, 64)):
                f = np.nan_to_num(stack[i].astype(np.float32))
                rng_ = np.ptp(f)
                frames.append((f - f.min()) / rng_ if rng_ > 0 else f * 0)
    if not frames:
        raise EmcsError(f"no readable scans of at least {patch}x{patch} pixels in the folder", folder)

    def crop(rng: np.random.Generator, size: int) -> np.ndarray:
        return zoomed_crop(rng, frames[int(rng.integers(len(frames)))], size, zoom)

    return crop

"""Adaptive groups: close a group early at a scene change or fast motion (``emcs encode --adaptive``).

TCS assumes the B frames of a group are coherent: their sum is decoded back
into frames by a prior over space and time (GAP-TV: Yuan, IEEE ICIP 2016; the
unfolding networks: Cheng et al., ECCV 2022). A cut, a jump of the stage or a
burst of motion inside a group breaks that prior: the decoder smears the two
scenes into each other. Deep-learning TCS decoders name this the open problem
of frames that are not coherent within a group (Cheng et al., "Memory-efficient
network for large-scale video compressive sensing", CVPR 2021, limitations).

The rule (:class:`GroupCutter`), decided per frame from data the encoder has
in memory anyway and before the group is summed:

1. Block means ``M_t`` of each frame: means of ``BLOCK`` x ``BLOCK`` pixel
   blocks, from every ``ROW_STEP``-th row only (a strided view: the first
   row of each block, 1/16 of the frame's bytes; :func:`block_means`).
2. For frame t of a group whose first frame is f, the change
   ``d = M_t - M_f`` with its mean over the frame taken out (a uniform
   offset is no change of scene; a change of gain g, e.g. of the beam
   current, adds only (g - 1)^2 to r: 0.01 for 10 %), and the change ratio::

       r_t = (var(d) - 2 s^2) / (var(M_f) + s^2)

   where ``s^2 = sigma^2 / n`` is the read/shot-noise variance of a block mean
   of n sampled pixels and sigma the pixel noise of the movie's first frame
   (:func:`emcs.tcs.encode.noise_sigma`). ``r`` is the fraction of the
   scene's block-scale structure that changed, with the noise taken out: 0
   for a still scene at any dose, about 2 for a cut to an unrelated scene of
   the same contrast, and in between for motion (about 1 once the scene has
   moved by a block).
3. The group closes before frame t when ``r_t > threshold`` and the group
   already has ``min_frames`` frames; it never holds more than B frames.

The default threshold :data:`DEFAULT_THRESHOLD` was chosen on training movies
(``benchmarks/bench_adaptive.py --train``: seeds and movies apart from the
benchmark's test movies), as the value that closes groups at the known cuts and
jumps while leaving slow drift in full groups; see ``benchmarks/adaptive.md``.
The container needs nothing new: it stores the frame count of every group
(``counts.npy``), and a group of n frames used the first n masks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from emcs.errors import EmcsError

#: block side in pixels of the block means
BLOCK = 16
#: the block means use every ROW_STEP-th row (a strided view: 1/ROW_STEP of the frame's bytes;
#: one row of each block: its 16 pixels stand for the block)
ROW_STEP = 16
#: close a group when the change ratio r of a frame exceeds this (see the module docstring)
DEFAULT_THRESHOLD = 0.75
#: fewest frames of an adaptive group (except the movie's last one)
MIN_FRAMES = 2
#: bytes of measurements an adaptive encode keeps in memory before it spools them to a file
SPOOL_MEMORY = 256 << 20


def block_means(frames: np.ndarray, block: int = BLOCK, row_step: int = ROW_STEP) -> np.ndarray:
    """Means of ``block`` x ``block`` blocks of (n, H, W) frames from every ``row_step``-th row.

    Frames smaller than a block give one block (the sampled rows of the whole
    frame). Returns (n, blocks) float64; edge pixels beyond whole blocks are left out.

    Examples
    --------
    >>> x = np.arange(2 * 32 * 32, dtype=np.uint16).reshape(2, 32, 32)
    >>> block_means(x).shape
    (2, 4)
    >>> block_means(np.ones((1, 3, 5), np.uint8)).tolist()
    [[1.0]]
    """
    n, H, W = frames.shape
    side = min(block, H, W)
    step = min(row_step, side)
    hb, wb = H // side, W // side
    rows = -(-side // step)  # sampled rows per block
    # the sampled rows in float32 (a small copy; exact for 16-bit frames), then one einsum
    x = frames[:, : hb * side : step, : wb * side].astype(np.float32)
    sums = np.einsum("nhrws->nhw", x.reshape(n, hb, rows, wb, side)).astype(np.float64)
    return sums.reshape(n, hb * wb) / np.float64(rows * side)


def sampled_pixels(frame_shape: tuple[int, int], block: int = BLOCK, row_step: int = ROW_STEP) -> int:
    """Pixels averaged into one block mean of :func:`block_means` for frames of ``frame_shape``."""
    side = min(block, *frame_shape)
    return -(-side // min(row_step, side)) * side


def change_ratio(means: np.ndarray, noise_var: float) -> np.ndarray:
    """The change ratio r of every row of ``means`` (n, blocks) against row 0 (module docstring).

    ``noise_var`` is the noise variance of one block mean. Row 0 gives r = 0 up to noise.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(2, 400))
    >>> r = change_ratio(np.stack([a, a + 0.01, b]), noise_var=0.0)
    >>> bool(r[1] < 0.01), bool(1.5 < r[2] < 2.5)
    (True, True)
    """
    d = means - means[0]
    change = d.var(axis=1) - 2.0 * noise_var
    return change / max(means[0].var() + noise_var, np.finfo(np.float64).tiny)  # a flat, noiseless frame


class GroupCutter:
    """Decides where adaptive groups close (the rule of the module docstring).

    Parameters
    ----------
    B : int
        Most frames of a group.
    noise_sigma : float
        Pixel noise of the movie (standard deviation, input units).
    frame_shape : (int, int)
    threshold : float
        Close before a frame whose change ratio exceeds this (> 0).
    min_frames : int
        Fewest frames of a group (1 .. B).

    The public boundary (:func:`emcs.tcs.encode.encode_stack`) checks the
    options with :func:`check_adaptive_options`.
    """

    def __init__(self, B: int, noise_sigma: float, frame_shape: tuple[int, int],
                 threshold: float = DEFAULT_THRESHOLD, min_frames: int = MIN_FRAMES):
        self.B = int(B)
        self.threshold = float(threshold)
        self.min_frames = int(min_frames)
        self.noise_var = float(noise_sigma) ** 2 / sampled_pixels(frame_shape)

    def length(self, means: np.ndarray) -> int:
        """Frames of the group that starts with row 0 of ``means`` (block means of up to B
        consecutive frames): the first frame t >= ``min_frames`` that changed too much, else all."""
        r = change_ratio(means[: self.B], self.noise_var)
        over = np.flatnonzero(r[self.min_frames:] > self.threshold)
        return int(self.min_frames + over[0]) if over.size else min(len(means), self.B)


def check_adaptive_options(threshold: float, min_frames: int, B: int) -> None:
    """Raise :class:`EmcsError` (naming the parameter) for a threshold <= 0 or a min_frames
    outside 1 .. B."""
    if not threshold > 0:
        raise EmcsError(f"adaptive_threshold must be > 0, got {threshold}", param="adaptive_threshold")
    if not 1 <= min_frames <= B:
        raise EmcsError(f"min_frames must be between 1 and B={B}, got {min_frames}",
                        param="min_frames")


def adaptive_groups(read: Callable[[int, int], np.ndarray], n_frames: int, B: int,
                    noise: Callable[[np.ndarray], float], threshold: float = DEFAULT_THRESHOLD,
                    min_frames: int = MIN_FRAMES) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, frames)`` of the consecutive adaptive groups of a movie of ``n_frames`` frames.

    ``read(a, b)`` gives frames ``a:b``; ``noise(frame)`` the pixel noise
    (standard deviation) of the movie's first frame; the groups are closed by
    a :class:`GroupCutter` of ``B``, ``threshold`` and ``min_frames``. Frames
    after a cut are kept for the next group (each frame is read once and its
    block means computed once).

    Examples
    --------
    >>> movie = np.zeros((7, 32, 32), np.uint8)
    >>> movie[3:] = np.random.default_rng(0).integers(0, 255, (32, 32))   # a cut before frame 3
    >>> [(start, len(g)) for start, g in adaptive_groups(lambda a, b: movie[a:b], 7, 5, lambda f: 1.0)]
    [(0, 3), (3, 4)]
    """
    start = 0
    frames = read(0, 1)
    rule = GroupCutter(B, noise(frames[0]), frames.shape[1:], threshold, min_frames)
    means = block_means(frames)
    while start < n_frames:
        new = read(start + len(frames), min(n_frames, start + B))
        if len(new):
            frames = np.concatenate([frames, new]) if len(frames) else new
            means = np.concatenate([means, block_means(new)])
        n = rule.length(means)
        yield start, frames[:n]
        frames, means = frames[n:], means[n:]
        start += n


def group_sizes(counts) -> dict:
    """Number of groups and the fewest / mean / most frames per group of ``counts``.

    Examples
    --------
    >>> group_sizes([10, 10, 4, 10])
    {'groups': 4, 'min_frames': 4, 'mean_frames': 8.5, 'max_frames': 10}
    """
    counts = np.asarray(counts)
    return {"groups": int(counts.size), "min_frames": int(counts.min()),
            "mean_frames": round(float(counts.mean()), 3), "max_frames": int(counts.max())}


def rule_meta(threshold: float, min_frames: int) -> dict:
    """The container's record of how adaptive groups were closed (``meta["encoder"]["groups"]``)."""
    return {"kind": "adaptive", "rule": "change ratio of block means (emcs.tcs.adaptive)",
            "threshold": float(threshold), "min_frames": int(min_frames),
            "block": BLOCK, "row_step": ROW_STEP}


class Spool:
    """Measurements kept until the number of groups is known (adaptive groups): :meth:`write`
    them, make the container writer (:class:`emcs.tcs.container.ContainerWriter`), then
    :meth:`replay` them into it.

    The first ``memory`` bytes of measurements stay in memory (no copy); the
    rest goes to a temporary file in ``folder``, so memory stays bounded
    whatever the movie length.
    """

    def __init__(self, folder: str, memory: int = SPOOL_MEMORY):
        self._folder, self._memory = folder, int(memory)
        self._file = None
        self._items: list[tuple] = []  # (measurement or (dtype, shape), value_range, frames)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            self._file.close()

    def write(self, y: np.ndarray, value_range: tuple, frames: int) -> None:
        self._memory -= y.nbytes
        if self._memory >= 0:
            self._items.append((y, value_range, frames))
            return
        if self._file is None:
            import tempfile

            self._file = tempfile.TemporaryFile(dir=self._folder, prefix=".emcs-spool-")
        self._file.write(memoryview(np.ascontiguousarray(y)).cast("B"))
        self._items.append(((y.dtype, y.shape), value_range, frames))

    def replay(self, writer) -> None:
        if self._file is not None:
            self._file.seek(0)
        for y, value_range, frames in self._items:
            if isinstance(y, tuple):
                stored = np.empty(y[1], y[0])
                self._file.readinto(memoryview(stored).cast("B"))
                y = stored
            writer.write(y, value_range=value_range, frames=frames)


__all__ = [
    "BLOCK",
    "DEFAULT_THRESHOLD",
    "MIN_FRAMES",
    "ROW_STEP",
    "SPOOL_MEMORY",
    "GroupCutter",
    "Spool",
    "adaptive_groups",
    "block_means",
    "change_ratio",
    "check_adaptive_options",
    "group_sizes",
    "rule_meta",
    "sampled_pixels",
]

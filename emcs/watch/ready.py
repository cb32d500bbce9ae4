"""When has the detector software finished writing a movie?

A movie is *ready* once either

- a done-marker file the user names is beside it (``movie.tif.done`` or
  ``movie.done`` for the suffix ``.done``), or
- its size and modification time have not changed for ``settle`` seconds
  (:class:`SettleTracker`),

and then its header must agree with its size (:func:`incomplete_reason`): a
TIFF whose pages point past the end of the file, or an MRC file whose header
promises more (or fewer) frames than its bytes hold, is still being written
and is never encoded. Other formats (vendor files, ``.npy``) rely on the
settle time and on opening cleanly, which the encoder checks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from emcs.io.readers import MRC_SUFFIXES, TIFF_SUFFIXES

MRC_HEADER_BYTES = 1024


def marker_paths(path: str, suffix: str) -> tuple[str, str]:
    """The two names a done-marker of ``path`` may have: ``<name><suffix>``, ``<stem><suffix>``.

    >>> marker_paths("/d/movie.tif", ".done")
    ('/d/movie.tif.done', '/d/movie.done')
    """
    return path + suffix, os.path.splitext(path)[0] + suffix


def has_marker(path: str, suffix: str) -> bool:
    """True if a done-marker of ``path`` exists."""
    return any(os.path.exists(p) for p in marker_paths(path, suffix))


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float  # monotonic time this size and mtime were first seen


class SettleTracker:
    """Tells when a file's size and modification time have stayed unchanged for ``settle`` s.

    A file is settled when its (size, mtime) have not changed since this
    tracker first saw them ``settle`` seconds ago, or when its mtime is already
    ``settle`` seconds old (a file found finished at start-up, or by a
    ``once`` run). On a network share whose clock is behind this machine's by
    more than ``settle``, the second rule can be fooled: use a done-marker there.

    Parameters
    ----------
    settle : float
        Seconds without change.
    clock, wall : callable
        Monotonic and wall-clock time sources (replaceable in tests).

    Examples
    --------
    >>> t = [0.0]
    >>> tracker = SettleTracker(5.0, clock=lambda: t[0], wall=lambda: 100.0)
    >>> tracker.settled("a.tif", (10, 99 * 10**9))  # 10 bytes, modified 1 s ago
    False
    >>> t[0] = 6.0
    >>> tracker.settled("a.tif", (10, 99 * 10**9))
    True
    """

    def __init__(self, settle: float, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time):
        self.settle = float(settle)
        self._clock = clock
        self._wall = wall
        self._seen: dict[str, _Seen] = {}

    def settled(self, path: str, state: tuple[int, int]) -> bool:
        """True if ``path``, now of ``state`` (size, mtime_ns), has not changed for ``settle`` s."""
        now = self._clock()
        size, mtime_ns = state
        seen = self._seen.get(path)
        if seen is None or (seen.size, seen.mtime_ns) != state:
            seen = self._seen[path] = _Seen(size, mtime_ns, now)
        age = self._wall() - mtime_ns / 1e9
        return size > 0 and max(now - seen.since, age) >= self.settle

    def forget(self, path: str) -> None:
        """Drop what was seen of ``path`` (done with it)."""
        self._seen.pop(path, None)

    def retain(self, paths) -> None:
        """Forget every file but ``paths`` (the others are gone): memory stays bounded."""
        keep = set(paths)
        for path in [p for p in self._seen if p not in keep]:
            del self._seen[path]


def incomplete_reason(path: str) -> str | None:
    """Why the header of ``path`` says it is not completely written yet, or None.

    TIFF (and EER): every page's pixel data must lie inside the file. MRC: the
    file must hold exactly the 1024-byte header, the extended header and the
    ``nx * ny * nz`` pixels the header promises. Other formats: None.
    """
    lower = path.lower()
    try:
        if lower.endswith(TIFF_SUFFIXES + (".eer",)):
            return _tiff_reason(path)
        if lower.endswith(MRC_SUFFIXES):
            return _mrc_reason(path)
    except OSError as exc:
        return f"cannot be read yet ({exc.strerror or exc})"
    return None


def _tiff_reason(path: str) -> str | None:
    import tifffile

    size = os.path.getsize(path)
    try:
        with tifffile.TiffFile(path) as tif:
            n_pages = 0
            for page in tif.pages:
                n_pages += 1
                ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=False)]
                if ends and max(ends) > size:
                    return (f"page {n_pages} ends at byte {max(ends)} but the file has {size} "
                            "bytes (still being written?)")
    except Exception as exc:  # tifffile raises many types for a file cut short
        return f"not a complete TIFF yet ({type(exc).__name__}: {exc})"
    return None if n_pages else "the TIFF has no pages yet"


def _mrc_reason(path: str) -> str | None:
    import warnings

    import mrcfile
    import numpy as np
    from mrcfile.utils import data_dtype_from_header, data_shape_from_header

    size = os.path.getsize(path)
    if size < MRC_HEADER_BYTES:
        return f"only {size} bytes, less than an MRC header"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.open(path, header_only=True, permissive=True) as mrc:
                header = mrc.header
                dtype = data_dtype_from_header(header)
                shape = data_shape_from_header(header)
    except (ValueError, AttributeError) as exc:
        return f"the MRC header is not complete yet ({exc})"
    expected = MRC_HEADER_BYTES + int(header.nsymbt) + int(np.prod(shape)) * dtype.itemsize
    if size == expected:
        return None
    return (f"the header promises {int(header.nz)} frames ({expected} bytes) but the file has "
            f"{size} bytes (still being written?)")

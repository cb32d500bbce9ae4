"""Image sequences: one file per frame, named by a printf pattern such as ``frames/f_%04d.png``.

Writing rule (what :class:`SequenceSink` does):

- frames are numbered from 0 (``f_0000.png``, ``f_0001.png`` ...);
- ``.png``: 8- and 16-bit unsigned integer frames are written as they are
  (no scaling); any other pixel type is refused (write ``.tif`` frames, which
  hold every type emcs reads, or a single stack file);
- ``.tif`` / ``.tiff`` / ``.npy``: every pixel type is written as it is, TIFF
  frames keep the pixel size;
- each frame is written atomically (temporary file, then rename); if the run
  fails, the frames it wrote are removed; with ``force``, frames of the same
  pattern numbered beyond the new sequence (left by an earlier, longer run) are
  removed on success so that the folder holds exactly the new sequence.

Reading: a printf pattern (``'f_%04d.png'``) or a quoted glob (``'f_*.png'``)
is opened by :func:`emcs.io.open_stack`; files are taken in natural order
(``f_2`` before ``f_10``).
"""

from __future__ import annotations

import contextlib
import glob as _glob
import os
import re

import numpy as np

from emcs.errors import EmcsError
from emcs.io.partial import clean_stale_partials, partial_path

SEQUENCE_SUFFIXES = (".png", ".tif", ".tiff", ".npy")
_PNG_DTYPES = (np.dtype("uint8"), np.dtype("uint16"))
_PRINTF = re.compile(r"%(0?\d*)d")


def is_pattern(path: str) -> bool:
    """True if the file name part of ``path`` has one printf field (``%d``, ``%04d``)."""
    return len(_PRINTF.findall(os.path.basename(path))) == 1 and "%" not in os.path.dirname(path)


def pattern_glob(pattern: str) -> tuple[str, re.Pattern]:
    """A glob matching the files of a printf pattern, and a regex capturing their number."""
    folder, name = os.path.split(pattern)
    match = _PRINTF.search(name)
    prefix, suffix = name[: match.start()], name[match.end():]
    glob = os.path.join(_glob.escape(folder), _glob.escape(prefix) + "*" + _glob.escape(suffix))
    regex = re.compile(re.escape(prefix) + r"(\d+)" + re.escape(suffix) + "$")
    return glob, regex


def natural_key(path: str) -> list:
    """Sort key putting ``f_2`` before ``f_10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


def list_files(pattern: str) -> list[str]:
    """The files a printf pattern or a glob names, in frame order."""
    if is_pattern(pattern):
        glob, regex = pattern_glob(pattern)
        numbered = []
        for f in _glob.glob(glob):
            m = regex.match(os.path.basename(f))
            if m:
                numbered.append((int(m.group(1)), f))
        return [f for _, f in sorted(numbered)]
    return sorted(_glob.glob(pattern), key=natural_key)


def _frame_suffix(pattern: str) -> str:
    suffix = os.path.splitext(pattern)[1].lower()
    if suffix not in SEQUENCE_SUFFIXES:
        raise EmcsError(
            "image sequences are written as " + ", ".join(SEQUENCE_SUFFIXES) + " frames", pattern
        )
    return suffix


def check_sequence(pattern: str, n_frames: int, dtype, force: bool) -> None:
    """Validate a sequence output before any work: folder, pixel type, existing frames."""
    suffix = _frame_suffix(pattern)
    dtype = np.dtype(dtype)
    if suffix == ".png" and dtype not in _PNG_DTYPES:
        raise EmcsError(
            f"PNG frames hold 8- or 16-bit unsigned integers; these frames are {dtype} "
            "(write .tif frames, e.g. f_%04d.tif, or one stack file)",
            pattern,
        )
    folder = os.path.dirname(os.path.abspath(pattern))
    if not os.path.isdir(folder):
        raise EmcsError(f"the output folder {folder} does not exist; create it first "
                        f"(mkdir -p {folder})", pattern)
    clean_stale_partials(folder)
    if not force:
        for k in range(n_frames):
            name = pattern % k
            if os.path.exists(name):
                raise EmcsError("already exists; use --force to overwrite the sequence", name)


class SequenceSink:
    """Writes frames one file each, atomically; used by :class:`emcs.io.StackWriter`."""

    def __init__(self, pattern: str, shape, dtype, pixel_size, force: bool, write_tiff=None):
        self.pattern, self.shape, self.dtype = pattern, shape, np.dtype(dtype)
        self.pixel_size, self.force = pixel_size, force
        # TIFF frames are written by emcs.io.write (handed in: no import circle)
        self.write_tiff = write_tiff
        self.suffix = _frame_suffix(pattern)
        self.written: list[str] = []

    def write(self, index: int, frame: np.ndarray) -> None:
        target = self.pattern % index
        tmp = partial_path(target)
        try:
            self._write_file(tmp, frame)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self.written.append(target)

    def _write_file(self, tmp: str, frame: np.ndarray) -> None:
        if self.suffix == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, frame, allow_pickle=False)
        elif self.suffix == ".png":
            import imageio.v3 as iio

            iio.imwrite(tmp, frame, extension=".png")
        else:
            self.write_tiff(tmp, frame, pixel_size=self.pixel_size, force=True)

    def finish(self) -> None:
        if self.force:
            keep = set(self.written)
            for f in list_files(self.pattern):
                if f not in keep:
                    with contextlib.suppress(OSError):
                        os.unlink(f)

    def abort(self) -> None:
        for f in self.written:
            with contextlib.suppress(OSError):
                os.unlink(f)
        self.written = []

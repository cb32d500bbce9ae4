"""Safe writing of image stacks: temporary file + rename, never a silent overwrite.

Formats: TIFF (pixel size kept), MRC (MRC2014 image stack, space group 0,
voxel size kept), ``.npy``, image sequences (``frames/f_%04d.png``, see
:mod:`emcs.io.sequence`) and ``-`` (standard output, TIFF; see
:mod:`emcs.io.stdio`). :class:`StackWriter` writes frame chunks as they are
produced so that memory stays bounded. Pixel sizes are in Å.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import numpy as np

from emcs.errors import EmcsError
from emcs.io.partial import clean_stale_partials, partial_path
from emcs.io.sequence import SequenceSink, check_sequence, is_pattern
from emcs.io.stdio import STDIO, check_stdout, stdout_output

WRITE_SUFFIXES = (".tif", ".tiff", ".mrc", ".mrcs", ".npy")
_IMAGEJ_DTYPES = (np.dtype("uint8"), np.dtype("uint16"), np.dtype("float32"))


def check_suffix(path: str | os.PathLike, suffixes, what: str = "output") -> str:
    """Refuse a file name whose suffix is not one of ``suffixes`` (case-insensitive).

    >>> check_suffix("run1.npz", (".npz",))
    'run1.npz'
    >>> check_suffix("run1.tif", (".npz",))
    Traceback (most recent call last):
    ...
    emcs.errors.EmcsError: run1.tif: unsupported output type; allowed: .npz
    """
    path = os.fspath(path)
    if path != STDIO and not path.lower().endswith(tuple(s.lower() for s in suffixes)):
        raise EmcsError(f"unsupported {what} type; allowed: " + ", ".join(suffixes), path)
    return path


def check_output(path: str | os.PathLike, force: bool = False, suffixes=None) -> str:
    """Validate an output path before any work is done.

    Parameters
    ----------
    path : str or os.PathLike
        The output file, ``-`` (standard output) or, for image sequences, a
        printf pattern (``frames/f_%04d.png``).
    force : bool
        Allow overwriting an existing file.
    suffixes : sequence of str, optional
        The suffixes the caller can write (``(".npz",)``); others are refused
        with a message naming the file and the allowed suffixes.

    Raises
    ------
    EmcsError
        Wrong suffix, existing file without ``force``, a folder, a missing or
        read-only output folder, or ``-`` while stdout is a terminal.
    """
    path = os.fspath(path)
    if suffixes is not None:
        check_suffix(path, suffixes)
    if path == STDIO:
        check_stdout()
        return path
    if os.path.isdir(path):
        raise EmcsError("is a folder; give an output file name", path)
    if os.path.exists(path) and not force:
        raise EmcsError("already exists; use --force to overwrite it", path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise EmcsError(
            f"the output folder {folder} does not exist; create it first (mkdir -p {folder})", path
        )
    if not os.access(folder, os.W_OK):
        raise EmcsError(f"the output folder {folder} is not writable", path)
    return path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, force: bool = False,
                  suffix: str | None = None) -> Iterator[str]:
    """Yield a temporary path in the target folder; rename it to ``path`` on success.

    On any error the temporary file is removed and an existing ``path`` is left
    untouched. The temporary file is hidden and carries this process's id
    (:mod:`emcs.io.partial`); those left by killed runs are removed here first.
    ``path`` ``-`` writes to standard output (``suffix`` names the format of
    the temporary file, e.g. ``".npz"``).
    """
    path = check_output(path, force)
    if path == STDIO:
        with stdout_output(suffix or ".tif") as tmp:
            yield tmp
        return
    folder = os.path.dirname(os.path.abspath(path))
    clean_stale_partials(folder)
    # keep the suffix so that libraries choosing a format by name still work
    tmp = partial_path(path)
    # created like a plain open() would (umask applies), never over another file
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    mode = 0o666 & ~_current_umask()
    try:
        yield tmp
        os.chmod(tmp, mode)  # some writers (e.g. safetensors) replace the file they are given
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fmt(path: str) -> str:
    if is_pattern(path):
        return "sequence"
    lower = path.lower()
    if lower.endswith((".tif", ".tiff")):
        return "tiff"
    if lower.endswith((".mrc", ".mrcs")):
        return "mrc"
    if lower.endswith(".npy"):
        return "npy"
    if path == STDIO:
        return "tiff"
    raise EmcsError(
        "unsupported output type; write .tif/.tiff, .mrc/.mrcs, .npy, a frame pattern "
        "(frames/f_%04d.png) or - (stdout)", path
    )


class StackWriter:
    """Write a (T, H, W) stack chunk by chunk, atomically.

    Parameters
    ----------
    path : str
        Output file (.tif, .tiff, .mrc, .mrcs or .npy), a printf pattern for
        an image sequence (``frames/f_%04d.png``, see :mod:`emcs.io.sequence`)
        or ``-`` (TIFF on standard output).
    shape : tuple of int
        Final (T, H, W) shape.
    dtype : numpy dtype
        Stored pixel type. MRC cannot store uint8; it is widened to uint16.
    pixel_size : float, optional
        Å per pixel, kept in the file's metadata.
    force : bool
        Overwrite an existing file.
    metadata : dict, optional
        Extra JSON-serialisable fields for the TIFF's shaped metadata (read back
        by ``tifffile.TiffFile(...).shaped_metadata``); MRC and npy have no place
        for them and ignore them.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "out.mrc")
    >>> with StackWriter(p, (4, 8, 8), np.float32, pixel_size=2.0) as w:
    ...     w.write(np.ones((2, 8, 8), np.float32))
    ...     w.write(np.zeros((2, 8, 8), np.float32))
    """

    def __init__(self, path, shape, dtype, pixel_size: float | None = None, force: bool = False,
                 metadata: dict | None = None):
        self.path = os.fspath(path)
        self.metadata = dict(metadata or {})
        self.format = _fmt(self.path)
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) != 3:
            raise ValueError("shape must be (T, H, W)")
        self.dtype = np.dtype(dtype)
        self.pixel_size = pixel_size
        self.force = force
        self._written = 0
        self._ctx = None
        self._tmp = None
        self._handle = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> StackWriter:
        if self.format == "sequence":
            check_sequence(self.path, self.shape[0], self.dtype, self.force)
            self._handle = SequenceSink(self.path, self.shape, self.dtype, self.pixel_size,
                                        self.force, write_tiff=write_stack)
            return self
        self._ctx = atomic_output(self.path, self.force, suffix=".tif")
        self._tmp = self._ctx.__enter__()
        try:
            self._open()
        except BaseException as exc:
            self._ctx.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.format == "sequence":
            return self._exit_sequence(exc_type)
        try:
            if exc_type is None:
                self._check_complete()
                self._finish()
            else:
                self._abort()
        except BaseException as err:
            self._abort()
            self._ctx.__exit__(type(err), err, err.__traceback__)
            raise
        return bool(self._ctx.__exit__(exc_type, exc, tb))

    def _check_complete(self) -> None:
        if self._written != self.shape[0]:
            raise RuntimeError(f"StackWriter got {self._written} frames, expected {self.shape[0]}")

    def _exit_sequence(self, exc_type) -> bool:
        try:
            if exc_type is None:
                self._check_complete()
                self._handle.finish()
                return False
        except BaseException:
            self._handle.abort()
            raise
        self._handle.abort()
        return False

    def _open(self) -> None:
        if self.format == "tiff":
            import tifffile

            self._handle = tifffile.TiffWriter(self._tmp, bigtiff=self._needs_bigtiff(), imagej=False)
        elif self.format == "mrc":
            import mrcfile

            dtype = np.dtype("uint16") if self.dtype == np.uint8 else self.dtype
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._handle = mrcfile.new_mmap(
                    self._tmp, shape=self.shape, mrc_mode=_mrc_mode(dtype, self.path), overwrite=True
                )
            self._handle.set_image_stack()  # MRC2014: a movie is an image stack (ispg 0), not a volume
            if self.pixel_size:
                self._handle.voxel_size = self.pixel_size
        else:
            self._handle = np.lib.format.open_memmap(self._tmp, mode="w+", dtype=self.dtype, shape=self.shape)

    def _needs_bigtiff(self) -> bool:
        return int(np.prod(self.shape)) * self.dtype.itemsize > 2**31

    def write(self, frames: np.ndarray) -> None:
        """Append frames of shape (n, H, W) (or one (H, W) frame)."""
        frames = np.asarray(frames)
        if frames.ndim == 2:
            frames = frames[None]
        n = frames.shape[0]
        if frames.shape[1:] != self.shape[1:]:
            raise ValueError(f"frames of shape {frames.shape[1:]} for a {self.shape[1:]} stack")
        if self._written + n > self.shape[0]:
            raise ValueError("more frames than the declared shape")
        frames = frames.astype(self.dtype, copy=False)
        a, b = self._written, self._written + n
        if self.format == "tiff":
            for k in range(n):
                self._write_tiff_page(frames[k])
        elif self.format == "sequence":
            for k in range(n):
                self._handle.write(a + k, frames[k])
        elif self.format == "mrc":
            self._handle.data[a:b] = frames
        else:
            self._handle[a:b] = frames
        self._written = b

    def _write_tiff_page(self, frame: np.ndarray) -> None:
        kwargs = {"contiguous": True, "photometric": "minisblack"}
        if self._written == 0:
            meta = {"axes": "TYX", "shape": list(self.shape), **self.metadata}
            if self.pixel_size:
                meta["pixel_size_A"] = float(self.pixel_size)
                kwargs["resolution"] = (1e8 / self.pixel_size, 1e8 / self.pixel_size)
                kwargs["resolutionunit"] = "CENTIMETER"
            kwargs["metadata"] = meta
        else:
            kwargs["metadata"] = None
            if self.pixel_size:
                kwargs["resolution"] = (1e8 / self.pixel_size, 1e8 / self.pixel_size)
                kwargs["resolutionunit"] = "CENTIMETER"
        self._handle.write(frame, **kwargs)

    def _finish(self) -> None:
        if self.format == "tiff":
            self._handle.close()
        elif self.format == "mrc":
            self._handle.set_image_stack()
            self._handle.update_header_from_data()
            self._handle.update_header_stats()
            if self.pixel_size:
                self._handle.voxel_size = self.pixel_size
            self._handle.close()
        else:
            self._handle.flush()
            del self._handle
        self._handle = None

    def _abort(self) -> None:
        h, self._handle = self._handle, None
        if h is not None and hasattr(h, "close"):
            with contextlib.suppress(Exception):
                h.close()


def _mrc_mode(dtype: np.dtype, path: str) -> int:
    modes = {
        np.dtype("int8"): 0,
        np.dtype("int16"): 1,
        np.dtype("float32"): 2,
        np.dtype("uint16"): 6,
        np.dtype("float16"): 12,
    }
    if dtype in modes:
        return modes[dtype]
    raise EmcsError(
        f"MRC files cannot hold {dtype} pixels; write .tif or .npy instead", path
    )


def write_stack(
    path: str | os.PathLike,
    data: np.ndarray,
    pixel_size: float | None = None,
    force: bool = False,
) -> None:
    """Write a whole (T, H, W) or (H, W) array atomically, keeping dtype and pixel size.

    Parameters
    ----------
    path : str
        ``.tif``/``.tiff``, ``.mrc``/``.mrcs``, ``.npy``, a frame pattern
        (``frames/f_%04d.png``) or ``-`` (TIFF on stdout).
    data : ndarray
        The pixels; a 2-D array is written as a one-frame stack.
    pixel_size : float, optional
        Å per pixel.
    force : bool
        Overwrite an existing file.
    """
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise ValueError(f"expected a 2-D or 3-D array, got shape {data.shape}")
    with StackWriter(path, data.shape, data.dtype, pixel_size=pixel_size, force=force) as w:
        w.write(data)

"""The :class:`Stack` object: a lazily read image stack (T, H, W), and the helpers readers share.

Pixel sizes are in ångström per pixel (:data:`PIXEL_SIZE_UNIT`, the MRC
convention) everywhere in emcs; ``None`` when the file does not record one.
Readers convert what the file stores (nm, µm, m ...) with :func:`to_angstrom`.
The readers themselves live in :mod:`emcs.io.readers` (TIFF, MRC, npy, images,
sequences), :mod:`emcs.io.vendor` (Gatan, Thermo Fisher, NCEM via rosettasciio)
and :mod:`emcs.io.eer` (Falcon EER).
"""

from __future__ import annotations

import contextlib
import mmap
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from emcs.errors import EmcsError

SUPPORTED_DTYPES = tuple(
    np.dtype(t)
    for t in (
        "uint8",
        "int8",
        "uint16",
        "int16",
        "uint32",
        "int32",
        "float16",
        "float32",
        "float64",
    )
)
PIXEL_SIZE_UNIT = "Å"
"""The unit of every pixel size in emcs (:attr:`Stack.pixel_size`, writers' ``pixel_size``)."""

# length units that file metadata use, expressed in angstrom
_UNIT_TO_ANGSTROM = {
    "a": 1.0,
    "å": 1.0,
    "\u212b": 1.0,
    "angstrom": 1.0,
    "nm": 10.0,
    "nanometer": 10.0,
    "um": 1e4,
    "µm": 1e4,
    "\u03bcm": 1e4,
    "micron": 1e4,
    "microns": 1e4,
    "micrometer": 1e4,
    "mm": 1e7,
    "cm": 1e8,
    "m": 1e10,
    "meter": 1e10,
    "metre": 1e10,
    "pm": 1e-2,
}


def to_angstrom(value, unit) -> float | None:
    """A length ``value`` in ``unit`` (``"nm"``, ``"µm"``, ``"m"``, ``"Å"`` ...) in ångström.

    Returns ``None`` for a missing, non-positive or non-finite value and for a
    unit that is not a length (``"1/nm"``, ``"px"``, ``""``): such a file records
    no usable real-space pixel size.

    >>> to_angstrom(0.25, "nm"), to_angstrom(1.5e-10, "m"), to_angstrom(2, "1/nm")
    (2.5, 1.5, None)
    """
    scale = _UNIT_TO_ANGSTROM.get(str(unit or "").strip().lower())
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    if scale is None or not np.isfinite(value) or value <= 0:
        return None
    return value * scale


@dataclass
class Stack:
    """A lazily read image stack of shape (T, H, W).

    Use :func:`open_stack` to make one. Frames are read on demand with
    ``stack[i]``, ``stack[a:b]``, :meth:`read` or :meth:`iter_chunks`; nothing
    larger than the requested range is loaded (memory-mapped formats read only
    the pages touched).

    Attributes
    ----------
    path : str
        The file (or glob pattern) the stack comes from.
    shape : tuple of int
        (T, H, W).
    dtype : numpy.dtype
        Pixel type, as stored.
    pixel_size : float or None
        Ångström per pixel (:data:`PIXEL_SIZE_UNIT`), if the file records one.
    metadata : dict
        Extra facts read from the file (format, original ndim, ...).
    """

    path: str
    shape: tuple[int, int, int]
    dtype: np.dtype
    pixel_size: float | None
    _reader: object = field(repr=False)
    metadata: dict = field(default_factory=dict)
    #: the (T, H, W) memory-mapped pixels in native byte order, when the format allows
    #: zero-copy reads (:meth:`read` with ``copy=False``)
    _mapped: np.ndarray | None = field(default=None, repr=False)

    pixel_size_unit = PIXEL_SIZE_UNIT

    @property
    def pixel_size_nm(self) -> float | None:
        """Nanometres per pixel (the unit optical data are usually quoted in)."""
        return None if self.pixel_size is None else self.pixel_size / 10.0

    @property
    def n_frames(self) -> int:
        return self.shape[0]

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self.shape[1], self.shape[2]

    @property
    def nbytes(self) -> int:
        """Bytes of pixel data (what an uncompressed copy would take)."""
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, start: int = 0, stop: int | None = None, *, copy: bool = True) -> np.ndarray:
        """Frames ``start:stop`` as a (n, H, W) array in the stored dtype.

        ``copy=False`` returns a read-only view of the file's mapped pages where
        the format is memory-mapped in native byte order (npy, MRC, contiguous
        TIFF), a copy otherwise. A view saves one pass over the pixels; it is
        valid until the stack is closed, its pages are read ahead from the disk
        (``MADV_WILLNEED``), and they stay resident until :meth:`release` drops them.
        """
        stop = self.shape[0] if stop is None else min(stop, self.shape[0])
        start = max(0, start)
        if stop <= start:
            return np.empty((0,) + self.frame_shape, self.dtype)
        if not copy and self._mapped is not None:
            view = self._mapped[start:stop]
            _advise(view, "MADV_WILLNEED")  # start reading a file not yet in the page cache
            return view
        try:
            data = self._reader(start, stop)
        except EmcsError:
            raise
        except Exception as exc:  # corrupt or truncated pixel data
            raise EmcsError(
                f"cannot read frames {start}..{stop - 1}: {_describe(exc)}", self.path
            ) from exc
        data = np.asarray(data)
        if data.shape != (stop - start,) + self.frame_shape:
            raise EmcsError(
                f"frames {start}..{stop - 1} have shape {data.shape}, expected "
                f"{(stop - start,) + self.frame_shape} (file truncated or corrupt)",
                self.path,
            )
        return data

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            i = int(key)
            if i < 0:
                i += self.shape[0]
            if not 0 <= i < self.shape[0]:
                raise IndexError(f"frame {key} out of range for {self.shape[0]} frames")
            return self.read(i, i + 1)[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            data = self.read(start, stop)
            return data[::step] if step != 1 else data
        raise TypeError("index a Stack with an int or a slice")

    def release(self, start: int, stop: int) -> None:
        """Drop the resident mapped pages of frames ``start:stop`` (after a ``copy=False`` read).

        Best effort and always safe: a view still in use reads its pages back from the file.
        """
        if self._mapped is not None and stop > start:
            drop_pages(self._mapped[max(0, start) : stop])

    def iter_chunks(self, size: int) -> Iterator[np.ndarray]:
        """Yield consecutive (<= size, H, W) chunks covering all frames."""
        if size < 1:
            raise ValueError("chunk size must be >= 1")
        for start in range(0, self.shape[0], size):
            yield self.read(start, start + size)

    def iter_frames(self) -> Iterator[np.ndarray]:
        for chunk in self.iter_chunks(1):
            yield chunk[0]

    def close(self) -> None:
        closer = self.metadata.pop("_close", None)
        if closer is not None:
            closer()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text and text[0] else type(exc).__name__


def _check_dtype(dtype: np.dtype, path: str) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.byteorder not in ("=", "|"):
        dtype = dtype.newbyteorder("=")
    if dtype not in SUPPORTED_DTYPES:
        raise EmcsError(
            f"unsupported pixel type {dtype} (supported: "
            + ", ".join(str(d) for d in SUPPORTED_DTYPES)
            + ")",
            path,
        )
    return dtype


def _to_stack_shape(shape: tuple[int, ...], path: str) -> tuple[int, int, int]:
    """Map a file's array shape to (T, H, W); size-1 axes beyond 3-D are dropped."""
    squeezed = tuple(shape)
    while len(squeezed) > 3 and 1 in squeezed:
        squeezed = tuple(squeezed[: squeezed.index(1)]) + tuple(squeezed[squeezed.index(1) + 1 :])
    if len(squeezed) == 2:
        squeezed = (1,) + squeezed
    if len(squeezed) != 3:
        raise EmcsError(
            f"image data has shape {tuple(shape)}; emcs needs a 2-D image or a 3-D stack "
            "(frames, height, width)",
            path,
        )
    if min(squeezed) == 0:
        raise EmcsError(f"the image data is empty (shape {tuple(shape)})", path)
    if squeezed[1] < 2 or squeezed[2] < 2:
        raise EmcsError(f"frames of shape {squeezed[1:]} are too small", path)
    return squeezed  # type: ignore[return-value]


def _mmap_of(view: np.ndarray) -> mmap.mmap | None:
    base = view
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "_mmap", None) or getattr(base, "base", None)
    return base if isinstance(base, mmap.mmap) else None


def drop_pages(part: np.ndarray) -> None:
    """``madvise(MADV_DONTNEED)``: we are done with the pages under the memory-mapped array ``part``.

    Without this, every page touched while streaming a long movie stays in the
    process's resident set (reclaimable page cache, but RSS grows with the movie).
    The range is rounded out to whole pages (a neighbour's shared edge page is
    read back from the file if it is used again). Best effort, no-op elsewhere.
    """
    _advise(part, "MADV_DONTNEED")


def _advise(part: np.ndarray, advice: str) -> None:
    """``madvise`` the whole pages under the memory-mapped array ``part`` (best effort)."""
    mm = _mmap_of(part)
    if mm is None or not hasattr(mmap, advice) or part.size == 0:
        return
    with contextlib.suppress(OSError, ValueError, BufferError):
        start = part.ctypes.data - np.frombuffer(mm, np.uint8, count=1).ctypes.data
        page = mmap.PAGESIZE
        lo = max(0, start // page * page)
        hi = min(len(mm), -(-(start + part.nbytes) // page) * page)
        if hi > lo:
            mm.madvise(getattr(mmap, advice), lo, hi - lo)


def native_mapped(view) -> np.ndarray | None:
    """``view`` when it is a memory-mapped array in native byte order (zero-copy reads), else None."""
    if view is None or not view.dtype.isnative or _mmap_of(view) is None:
        return None
    view = view.view()
    view.flags.writeable = False
    return view


def _native(a: np.ndarray) -> np.ndarray:
    if a.dtype.byteorder not in ("=", "|"):
        a = a.astype(a.dtype.newbyteorder("="))
    return a

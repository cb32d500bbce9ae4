"""Lazy, memory-mapped reading of image stacks (T, H, W).

Every reader returns a :class:`Stack`: shape, dtype, pixel size and random
access to frame ranges without loading the whole file. Formats:

- TIFF / BigTIFF (multi-page, ImageJ hyperstacks), memory-mapped when the
  pixel data are uncompressed and contiguous, page by page otherwise;
- MRC / MRCS (modes 0, 1, 2, 6, 12 and the rest that mrcfile reads), memory-mapped;
- ``.npy`` (memory-mapped, never unpickled);
- single images (PNG, JPEG, BMP, GIF ... via imageio) as stacks of one frame;
- image sequences given as a glob pattern (``'frames/*.png'``), read one file per frame.

Pixel sizes are in ångström per pixel (the MRC convention); ``None`` when the
file does not record one.
"""

from __future__ import annotations

import contextlib
import glob as _glob
import logging
import mmap
import os
import warnings
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
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".ome.tif")
MRC_SUFFIXES = (".mrc", ".mrcs", ".st", ".ali", ".rec", ".map")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".webp")

# length units that TIFF/ImageJ metadata use, expressed in angstrom
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
}


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
        Å per pixel, if the file records one.
    metadata : dict
        Extra facts read from the file (format, original ndim, ...).
    """

    path: str
    shape: tuple[int, int, int]
    dtype: np.dtype
    pixel_size: float | None
    _reader: object = field(repr=False)
    metadata: dict = field(default_factory=dict)

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

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Frames ``start:stop`` as a (n, H, W) array in the stored dtype."""
        stop = self.shape[0] if stop is None else min(stop, self.shape[0])
        start = max(0, start)
        if stop <= start:
            return np.empty((0,) + self.frame_shape, self.dtype)
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


def _drop_mapped_pages(view: np.ndarray) -> None:
    """Tell the kernel we are done with the pages of a memory-mapped array.

    Frames are copied out of the mapping; without this, every page touched while
    streaming a long movie stays in the process's resident set (reclaimable page
    cache, but it makes RSS grow with the movie). Best effort, no-op elsewhere.
    """
    base = view
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "_mmap", None) or getattr(base, "base", None)
    if isinstance(base, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        with contextlib.suppress(OSError, ValueError):
            base.madvise(mmap.MADV_DONTNEED)


def _native(a: np.ndarray) -> np.ndarray:
    if a.dtype.byteorder not in ("=", "|"):
        a = a.astype(a.dtype.newbyteorder("="))
    return a


# --------------------------------------------------------------------------- TIFF
def _tiff_pixel_size(tif) -> float | None:
    try:
        page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
        ij = tif.imagej_metadata or {}
        shaped = tif.shaped_metadata[0] if tif.shaped_metadata else {}
        if "pixel_size_A" in (shaped or {}):
            value = float(shaped["pixel_size_A"])
            return value if value > 0 else None
        tags = page.tags
        if "XResolution" not in tags:
            return None
        num, den = tags["XResolution"].value
        if num == 0 or den == 0:
            return None
        per_unit = num / den  # pixels per unit
        unit_tag = tags["ResolutionUnit"].value if "ResolutionUnit" in tags else 2
        unit_tag = int(unit_tag)
        if ij.get("unit"):
            scale = _UNIT_TO_ANGSTROM.get(str(ij["unit"]).strip().lower())
            if scale is None:
                return None
            return scale / per_unit
        if unit_tag == 3:  # centimetre
            return 1e8 / per_unit
        if unit_tag == 2:  # inch: a print resolution (e.g. 72 dpi), not a pixel size
            return None
        return None
    except Exception:
        return None


@contextlib.contextmanager
def _capture_tifffile_log():
    """Collect tifffile's logged warnings (broken page chains, bad offsets).

    tifffile reports a truncated file by logging and returning fewer pages;
    emcs refuses such a file instead of silently dropping frames.
    """
    problems: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                problems.append(record.getMessage().split("\n")[0].strip())

    logger = logging.getLogger("tifffile")
    handler = _Collect()
    old_propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield problems
    finally:
        logger.removeHandler(handler)
        logger.propagate = old_propagate


def _open_tiff(path: str) -> Stack:
    import tifffile

    with _capture_tifffile_log() as problems:
        try:
            tif = tifffile.TiffFile(path)
        except Exception as exc:
            raise EmcsError(f"not a readable TIFF file ({_describe(exc)})", path) from exc
        try:
            series_list = tif.series
        except Exception as exc:
            tif.close()
            raise EmcsError(f"cannot read the TIFF structure ({_describe(exc)})", path) from exc
    if problems:
        tif.close()
        raise EmcsError(f"truncated or corrupt TIFF ({problems[0]})", path)
    try:
        if not series_list:
            raise EmcsError("the TIFF file contains no images", path)
        series = series_list[0]
        dtype = _check_dtype(series.dtype, path)
        raw_shape = tuple(series.shape)
        if series.axes and series.axes[-1] in "SC" and raw_shape[-1] in (3, 4):
            raise EmcsError(
                f"colour image (shape {raw_shape}, axes {series.axes}); convert it to grayscale first",
                path,
            )
        shape = _to_stack_shape(raw_shape, path)
        pixel_size = _tiff_pixel_size(tif)
        n_pages = len(series.pages) if hasattr(series, "pages") else None
    except EmcsError:
        tif.close()
        raise
    except Exception as exc:
        tif.close()
        raise EmcsError(f"cannot read the TIFF structure ({_describe(exc)})", path) from exc

    mm = None
    try:
        if series.dataoffset is not None:
            mm = tifffile.memmap(path, mode="r", series=0)
            mm = mm.reshape(shape)
    except Exception:
        mm = None

    if mm is not None:

        def reader(a: int, b: int) -> np.ndarray:
            out = _native(np.array(mm[a:b]))
            _drop_mapped_pages(mm)
            return out

        kind = "tiff-mmap"
    elif n_pages == shape[0]:

        def reader(a: int, b: int) -> np.ndarray:
            return _native(series.asarray(key=slice(a, b)) if b - a > 1 else
                           series.asarray(key=a)[None]).reshape((b - a,) + shape[1:])

        kind = "tiff-pages"
    else:

        def reader(a: int, b: int) -> np.ndarray:
            return _native(series.asarray()).reshape(shape)[a:b]

        kind = "tiff-whole"

    def close() -> None:
        tif.close()

    return Stack(path, shape, dtype, pixel_size, reader, {"format": "tiff", "access": kind, "_close": close})


# --------------------------------------------------------------------------- MRC
def _open_mrc(path: str) -> Stack:
    import mrcfile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mrc = mrcfile.mmap(path, mode="r", permissive=False)
    except Exception as exc:
        raise EmcsError(f"not a valid MRC file ({_describe(exc)})", path) from exc
    try:
        data = mrc.data
        if data is None:
            raise EmcsError("the MRC file holds no data", path)
        dtype = _check_dtype(data.dtype, path)
        shape = _to_stack_shape(tuple(data.shape), path)
        vx = float(mrc.voxel_size.x)
        pixel_size = vx if vx > 0 else None
        view = data.reshape(shape)
    except EmcsError:
        mrc.close()
        raise
    except Exception as exc:
        mrc.close()
        raise EmcsError(f"cannot read the MRC data ({_describe(exc)})", path) from exc

    def reader(a: int, b: int) -> np.ndarray:
        out = _native(np.array(view[a:b]))
        _drop_mapped_pages(data)
        return out

    return Stack(path, shape, dtype, pixel_size, reader, {"format": "mrc", "access": "mmap", "_close": mrc.close})


# --------------------------------------------------------------------------- NPY
def _open_npy(path: str) -> Stack:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise EmcsError(f"not a plain numeric .npy array ({_describe(exc)})", path) from exc
    except Exception as exc:
        raise EmcsError(f"not a readable .npy file ({_describe(exc)})", path) from exc
    if not isinstance(arr, np.ndarray):
        raise EmcsError("expected one array in the .npy file", path)
    dtype = _check_dtype(arr.dtype, path)
    shape = _to_stack_shape(tuple(arr.shape), path)
    view = arr.reshape(shape)

    def reader(a: int, b: int) -> np.ndarray:
        out = _native(np.array(view[a:b]))
        _drop_mapped_pages(arr)
        return out

    return Stack(path, shape, dtype, None, reader, {"format": "npy", "access": "mmap"})


# --------------------------------------------------------------------------- images
def _read_image(path: str) -> np.ndarray:
    import imageio.v3 as iio

    try:
        img = np.asarray(iio.imread(path))
    except Exception as exc:
        raise EmcsError(f"not a readable image ({_describe(exc)})", path) from exc
    if img.ndim == 3 and img.shape[-1] in (3, 4):
        rgb = img[..., :3]
        if np.all(rgb[..., 0] == rgb[..., 1]) and np.all(rgb[..., 1] == rgb[..., 2]):
            img = np.ascontiguousarray(rgb[..., 0])
        else:
            raise EmcsError("colour image; convert it to grayscale first", path)
    return img


def _open_image(path: str) -> Stack:
    img = _read_image(path)
    dtype = _check_dtype(img.dtype, path)
    shape = _to_stack_shape(img.shape, path)
    data = img.reshape(shape)

    def reader(a: int, b: int) -> np.ndarray:
        return data[a:b]

    return Stack(path, shape, dtype, None, reader, {"format": "image"})


def _open_sequence(pattern: str) -> Stack:
    files = sorted(_glob.glob(pattern))
    if not files:
        raise EmcsError("no files match this pattern", pattern)
    first = open_stack(files[0])
    first.close()
    if first.n_frames != 1:
        raise EmcsError(
            f"image sequences need one frame per file; {files[0]} has {first.n_frames}", pattern
        )
    fshape, dtype = first.frame_shape, first.dtype

    def reader(a: int, b: int) -> np.ndarray:
        out = np.empty((b - a,) + fshape, dtype)
        for k, f in enumerate(files[a:b]):
            with open_stack(f) as s:
                if s.frame_shape != fshape or s.dtype != dtype:
                    raise EmcsError(
                        f"frame is {s.frame_shape} {s.dtype}, but the sequence starts with "
                        f"{fshape} {dtype}",
                        f,
                    )
                out[k] = s.read(0, 1)[0]
        return out

    return Stack(
        pattern,
        (len(files),) + fshape,
        dtype,
        first.pixel_size,
        reader,
        {"format": "sequence", "files": len(files)},
    )


def _has_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def open_stack(path: str | os.PathLike) -> Stack:
    """Open an image stack lazily.

    Parameters
    ----------
    path : str or os.PathLike
        A TIFF, MRC/MRCS, ``.npy`` or single-image file, or a glob pattern
        (quoted in the shell) for an image sequence, one frame per file.

    Returns
    -------
    Stack
        Shape (T, H, W), dtype, pixel size (Å) and lazy frame access.

    Raises
    ------
    EmcsError
        If the file is missing, unreadable, truncated, empty, not 2-D/3-D or of
        an unsupported pixel type.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from emcs.io import open_stack, write_stack
    >>> p = os.path.join(tempfile.mkdtemp(), "a.tif")
    >>> write_stack(p, np.zeros((3, 8, 8), np.uint16), pixel_size=1.5)
    >>> with open_stack(p) as s:
    ...     print(s.shape, s.dtype, round(s.pixel_size, 3))
    (3, 8, 8) uint16 1.5
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        if _has_glob(path):
            return _open_sequence(path)
        raise EmcsError("no such file", path)
    if os.path.isdir(path):
        raise EmcsError("is a folder; give a file, or a quoted glob like 'frames/*.tif'", path)
    if os.path.getsize(path) == 0:
        raise EmcsError("the file is empty (0 bytes)", path)
    lower = path.lower()
    if lower.endswith(TIFF_SUFFIXES):
        return _open_tiff(path)
    if lower.endswith(MRC_SUFFIXES):
        return _open_mrc(path)
    if lower.endswith(".npy"):
        return _open_npy(path)
    if lower.endswith(IMAGE_SUFFIXES):
        return _open_image(path)
    if lower.endswith(".npz"):
        raise EmcsError(
            "this is a .npz file (an emcs measurement container?), not an image stack", path
        )
    raise EmcsError(
        "unknown file type; emcs reads .tif/.tiff, .mrc/.mrcs, .npy and common image formats",
        path,
    )


def read_stack(path: str | os.PathLike) -> tuple[np.ndarray, Stack]:
    """Read a whole stack into memory; returns (data (T, H, W), stack info)."""
    with open_stack(path) as stack:
        return stack.read(), stack

"""Readers for the open formats, and :func:`open_stack`, which picks the reader for a file.

- TIFF / BigTIFF (multi-page, ImageJ hyperstacks), memory-mapped when the
  pixel data are uncompressed and contiguous, page by page otherwise
  (a Falcon EER file, a BigTIFF of electron events, goes to :mod:`emcs.io.eer`);
- MRC / MRCS (modes 0, 1, 2, 6, 12 and the rest that mrcfile reads), memory-mapped;
- ``.npy`` (memory-mapped, never unpickled);
- single images (PNG, JPEG, BMP, GIF ... via imageio) as stacks of one frame;
- image sequences given as a glob pattern (``'frames/*.png'``), read one file per frame;
- Gatan ``.dm3``/``.dm4``, Thermo Fisher Velox / NCEM ``.emd``, TIA ``.ser``
  through rosettasciio (:mod:`emcs.io.vendor`), Falcon ``.eer`` (:mod:`emcs.io.eer`);
- ``-``: standard input, spooled to a temporary file (:mod:`emcs.io.stdio`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings

import numpy as np

from emcs.errors import EmcsError
from emcs.io.sequence import is_pattern, list_files
from emcs.io.stack import (
    _UNIT_TO_ANGSTROM,
    Stack,
    _check_dtype,
    _describe,
    _native,
    _to_stack_shape,
    drop_pages,
    native_mapped,
)

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".ome.tif")
MRC_SUFFIXES = (".mrc", ".mrcs", ".st", ".ali", ".rec", ".map")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".webp")
VENDOR_SUFFIXES = (".dm3", ".dm4", ".emd", ".ser", ".h5", ".hdf5")
EER_SUFFIXES = (".eer",)
READ_SUFFIXES = (
    TIFF_SUFFIXES + MRC_SUFFIXES + (".npy",) + IMAGE_SUFFIXES + VENDOR_SUFFIXES + EER_SUFFIXES
)


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


def _open_tiff(path: str, eer_frames: int = 1, eer_upsampling: int = 1) -> Stack:
    import tifffile

    from emcs.io.eer import is_eer, open_eer

    if is_eer(path):
        return open_eer(path, eer_frames, eer_upsampling)

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
            part = mm[a:b]
            out = _native(np.array(part))
            drop_pages(part)
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

    return Stack(path, shape, dtype, pixel_size, reader, {"format": "tiff", "access": kind, "_close": close},
                 native_mapped(mm))


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
        part = view[a:b]
        out = _native(np.array(part))
        drop_pages(part)
        return out

    return Stack(path, shape, dtype, pixel_size, reader, {"format": "mrc", "access": "mmap", "_close": mrc.close},
                 native_mapped(view))


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
        part = view[a:b]
        out = _native(np.array(part))
        drop_pages(part)
        return out

    return Stack(path, shape, dtype, None, reader, {"format": "npy", "access": "mmap"}, native_mapped(view))


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
    files = list_files(pattern)
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


def open_stack(
    path: str | os.PathLike,
    *,
    dataset: int | str | None = None,
    eer_frames: int = 1,
    eer_upsampling: int = 1,
) -> Stack:
    """Open an image stack lazily.

    Parameters
    ----------
    path : str or os.PathLike
        A TIFF, MRC/MRCS, ``.npy``, single-image, Gatan ``.dm3``/``.dm4``,
        Velox or NCEM ``.emd``, TIA ``.ser`` or Falcon ``.eer`` file; a glob
        pattern (quoted in the shell) for an image sequence, one frame per file;
        or ``-`` for standard input (TIFF, MRC or ``.npy`` bytes).
    dataset : int or str, optional
        Files holding several images (Velox EMD with one image per detector, a
        DM file with several images, NCEM EMD groups): the index or the title
        of the one to read. By default the first image (or image stack).
    eer_frames : int
        EER only: raw EER fractions summed into each output frame (1 keeps
        every fraction as a frame).
    eer_upsampling : int
        EER only: 1 renders events on the physical sensor grid, 2 or 4 on a
        2x / 4x finer grid from the sub-pixel positions (super-resolution).

    Returns
    -------
    Stack
        Shape (T, H, W), dtype, pixel size (Å) and lazy frame access.

    Raises
    ------
    EmcsError
        If the file is missing, unreadable, truncated, empty, not 2-D/3-D or of
        an unsupported pixel type, or needs an optional extra that is missing.

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
    if path == "-":
        from emcs.io.stdio import open_stdin

        return open_stdin(lambda p: open_stack(p, dataset=dataset, eer_frames=eer_frames,
                                               eer_upsampling=eer_upsampling))
    if not os.path.exists(path):
        if _has_glob(path) or is_pattern(path):
            return _open_sequence(path)
        raise EmcsError("no such file", path)
    if os.path.isdir(path):
        raise EmcsError("is a folder; give a file, or a quoted glob like 'frames/*.tif'", path)
    if os.path.getsize(path) == 0:
        raise EmcsError("the file is empty (0 bytes)", path)
    lower = path.lower()
    if lower.endswith(TIFF_SUFFIXES + EER_SUFFIXES):
        return _open_tiff(path, eer_frames, eer_upsampling)
    if lower.endswith(MRC_SUFFIXES):
        return _open_mrc(path)
    if lower.endswith(".npy"):
        return _open_npy(path)
    if lower.endswith(IMAGE_SUFFIXES):
        return _open_image(path)
    if lower.endswith(VENDOR_SUFFIXES):
        from emcs.io.vendor import open_vendor

        return open_vendor(path, dataset)
    if lower.endswith(".npz"):
        raise EmcsError(
            "this is a .npz file (an emcs measurement container?), not an image stack", path
        )
    raise EmcsError(
        "unknown file type; emcs reads " + ", ".join(READ_SUFFIXES) + " and image sequences",
        path,
    )


def read_stack(path: str | os.PathLike, **options) -> tuple[np.ndarray, Stack]:
    """Read a whole stack into memory; returns (data (T, H, W), stack info).

    ``options`` are those of :func:`open_stack`.
    """
    with open_stack(path, **options) as stack:
        return stack.read(), stack

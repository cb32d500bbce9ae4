"""Vendor microscope formats read through rosettasciio, lazily.

- Gatan DigitalMicrograph ``.dm3`` / ``.dm4``: single images and stacks
  (in-situ series saved as one file per frame are read as a sequence:
  ``'Hour_00/*/*/*.dm4'``);
- Thermo Fisher Velox ``.emd`` and NCEM/Berkeley ``.emd`` / ``.h5`` (HDF5);
- Thermo Fisher TIA ``.ser`` (the ``.emi`` beside it is read for metadata if present).

rosettasciio is an optional extra (``pip install 'emcs[formats]'``). Data are
opened with ``lazy=True``: rosettasciio memory-maps DM data and wraps HDF5 and
SER data in dask arrays, and emcs computes only the frames asked for (with
dask's synchronous scheduler) one storage block at a time, so memory stays
bounded (the frames asked for, plus one block of at most 256 MiB) whatever the
file size.

Reference: the RosettaSciIO developers, RosettaSciIO (Zenodo,
doi:10.5281/zenodo.8011666).
"""

from __future__ import annotations

import contextlib
import importlib
import os

import numpy as np

from emcs.errors import EmcsError
from emcs.io.stack import Stack, _check_dtype, _describe, _native, _to_stack_shape, to_angstrom

_PLUGINS = {
    ".dm3": "digitalmicrograph",
    ".dm4": "digitalmicrograph",
    ".emd": "emd",
    ".h5": "emd",
    ".hdf5": "emd",
    ".ser": "tia",
}
_SPECTRAL_UNITS = ("eV", "keV")
_SPECTRAL_AXES = ("Energy loss", "Energy", "Wavelength")
MAX_PIXEL_SIZE = 1e7  # Å (1 mm)
BLOCK_CACHE_BYTES = 256 * 2**20
_EXTRA_HINT = "pip install 'emcs[formats]'"


def _plugin(path: str):
    suffix = os.path.splitext(path)[1].lower()
    try:
        return importlib.import_module(f"rsciio.{_PLUGINS[suffix]}")
    except ImportError as exc:
        raise EmcsError(f"reading {suffix} needs the optional extra: {_EXTRA_HINT}", path) from exc


def _read_signals(path: str) -> list[dict]:
    module = _plugin(path)
    kwargs = {"lazy": True}
    if module.__name__.endswith(".emd"):
        kwargs.update(select_type="images", load_SI_image_stack=True)  # images only, all frames
    try:
        signals = module.file_reader(path, **kwargs)
    except ImportError as exc:  # h5py (for EMD) or dask missing
        raise EmcsError(
            f"reading {os.path.splitext(path)[1].lower()} needs the optional extra: {_EXTRA_HINT}",
            path,
        ) from exc
    except Exception as exc:
        kind = os.path.splitext(path)[1].lower()
        raise EmcsError(f"not a readable {kind} file ({_describe(exc)})", path) from exc
    return list(signals or [])


def _image_axes(signal: dict) -> list[dict] | None:
    """The two signal axes (y, x) of an image (or image stack) signal; None otherwise."""
    axes = sorted(signal.get("axes", []), key=lambda a: a.get("index_in_array", 0))
    data = signal["data"]
    if len(axes) != data.ndim or data.ndim not in (2, 3):
        return None
    if np.dtype(data.dtype).kind in "cV":  # complex (FFT), RGB records
        return None
    if _is_spectral(axes):
        return None  # a spectrum image (EELS, EDS, CL), not images
    return axes[-2:]


def _is_spectral(axes: list[dict]) -> bool:
    """A spectrum or spectrum image: an energy / wavelength axis, or one signal axis of three."""
    signal_axes = [a for a in axes if not a.get("navigate", False)]
    return (
        (len(axes) == 3 and len(signal_axes) == 1)
        or any(str(a.get("units", "")) in _SPECTRAL_UNITS for a in axes)
        or any(str(a.get("name", "")) in _SPECTRAL_AXES for a in axes)
    )


def _pixel_size(axis: dict) -> float | None:
    """Å per pixel from a rosettasciio axis; None if absent or implausible.

    TIA diffraction patterns carry reciprocal calibrations that rosettasciio
    labels "nm" (1e16 nm per pixel); a pixel over 1 mm is taken as no pixel size.
    """
    value = to_angstrom(axis.get("scale"), axis.get("units"))
    return value if value is not None and value <= MAX_PIXEL_SIZE else None


def _title(signal: dict) -> str:
    return str(signal.get("metadata", {}).get("General", {}).get("title", "") or "")


def _choose(signals: list[dict], dataset, path: str) -> tuple[int, dict]:
    images = [(k, s) for k, s in enumerate(signals) if _image_axes(s) is not None]
    titles = [_title(s) or f"#{k}" for k, s in images]
    if not images:
        kinds = sorted({f"{s['data'].ndim}-D {np.dtype(s['data'].dtype)}" for s in signals})
        raise EmcsError(
            "holds no image or image stack emcs can read (found: "
            + (", ".join(kinds) or "nothing") + ")",
            path,
        )
    if dataset is None:
        return images[0]
    if isinstance(dataset, (int, np.integer)) or str(dataset).isdigit():
        index = int(dataset)
        if 0 <= index < len(images):
            return images[index]
    else:
        for item, title in zip(images, titles, strict=True):
            if title == dataset:
                return item
    raise EmcsError(
        f"dataset {dataset!r} not found; the images here are "
        + ", ".join(f"{i}: {t}" for i, t in enumerate(titles)),
        path,
        param="dataset",
    )


def _file_handles(signals: list[dict]) -> list:
    """The open files behind lazy rosettasciio arrays (HDF5 files; DM/SER memmaps have none)."""
    from rsciio.utils.file import get_file_handle

    handles = []
    for s in signals:
        try:
            handle = get_file_handle(s["data"], warn=False)
        except Exception:
            handle = None
        if handle is not None and all(handle is not h for h in handles):
            handles.append(handle)
    return handles


class _BlockReader:
    """Frames of a dask array, computed one storage block (along the frame axis) at a time.

    A lazy array's blocks follow the file's storage (HDF5 chunks, memmap
    pieces); asking dask for a few frames recomputes the whole block each
    time. Streaming reads therefore keep the last block (at most
    :data:`BLOCK_CACHE_BYTES`; larger blocks are sliced directly), so every
    block is read once.
    """

    def __init__(self, data):
        self.data = data
        self.edges = np.cumsum((0,) + tuple(data.chunks[0]))
        self.frame_bytes = int(np.prod(data.shape[1:])) * np.dtype(data.dtype).itemsize
        self.cached: tuple[int, int, np.ndarray] | None = None

    def _compute(self, a: int, b: int) -> np.ndarray:
        return _native(np.asarray(self.data[a:b].compute(scheduler="synchronous")))

    def __call__(self, a: int, b: int) -> np.ndarray:
        if self.cached is not None and self.cached[0] <= a and b <= self.cached[1]:
            start, _, block = self.cached
            return block[a - start:b - start].copy()
        head = None
        if self.cached is not None and self.cached[0] <= a < self.cached[1]:
            start, stop, block = self.cached  # streaming on: reuse the cached part
            head, a = block[a - start:], stop
        lo = int(self.edges[np.searchsorted(self.edges, a, side="right") - 1])
        hi = int(self.edges[np.searchsorted(self.edges, b, side="left")])
        if (hi - lo) * self.frame_bytes > BLOCK_CACHE_BYTES:
            tail = self._compute(a, b)
        else:
            self.cached = (lo, hi, self._compute(lo, hi))
            tail = self.cached[2][a - lo:b - lo]
        return tail.copy() if head is None else np.concatenate([head, tail])


def open_vendor(path: str, dataset: int | str | None = None) -> Stack:
    """Open a Gatan, Velox, NCEM or TIA file as a lazy :class:`Stack`.

    Parameters
    ----------
    path : str
        ``.dm3``, ``.dm4``, ``.emd``, ``.h5``/``.hdf5`` (NCEM EMD) or ``.ser``.
    dataset : int or str, optional
        Index or title of the image to read when the file holds several
        (the list is in ``stack.metadata["datasets"]``); the first by default.

    Returns
    -------
    Stack
        Frames (T, H, W) in the stored dtype; pixel size in Å from the
        file's calibration (``None`` for uncalibrated or reciprocal-space axes).
    """
    signals = _read_signals(path)
    index, signal = _choose(signals, dataset, path)
    data = signal["data"]
    _, x_axis = _image_axes(signal)
    dtype = _check_dtype(data.dtype, path)
    shape = _to_stack_shape(tuple(data.shape), path)
    pixel_size = _pixel_size(x_axis)
    view = data.reshape(shape) if tuple(data.shape) != shape else data

    reader = _BlockReader(view) if hasattr(view, "compute") else (
        lambda a, b: _native(np.asarray(view[a:b])))

    handles = _file_handles(signals)

    def close() -> None:
        for handle in handles:
            with contextlib.suppress(Exception):
                handle.close()

    fmt = os.path.splitext(path)[1].lower().lstrip(".")
    metadata = {
        "format": fmt,
        "access": "lazy",
        "dataset": _title(signal) or f"#{index}",
        "datasets": [_title(s) or f"#{k}" for k, s in enumerate(signals)
                     if _image_axes(s) is not None],
        "axes_units": [str(a.get("units", "")) for a in
                       sorted(signal.get("axes", []), key=lambda a: a.get("index_in_array", 0))],
        "_close": close,
    }
    return Stack(path, shape, dtype, pixel_size, reader, metadata)

"""Thermo Fisher Falcon EER (Electron Event Representation) movies, rendered into frames.

An EER file is a BigTIFF whose pages are *fractions*: very short exposures
(typically hundreds to thousands per movie) holding the positions of single
electron events, compressed with TIFF compression 65000/65001/65002 (run
lengths of skipped pixels plus a 2+2-bit sub-pixel position per event).
tifffile parses the TIFF structure and imagecodecs' ``eer_decode`` decodes a
fraction into a boolean image. emcs renders frames from them:

- ``eer_frames`` consecutive fractions are summed into one output frame
  (counts, ``uint16``); fractions left over at the end (fewer than
  ``eer_frames``) are dropped, as RELION and cryoSPARC do, and counted in
  ``stack.metadata["eer_dropped_fractions"]``;
- ``eer_upsampling`` 1 renders on the physical sensor grid (4096 x 4096 on a
  Falcon 4), 2 or 4 on a 2x / 4x finer grid from the sub-pixel bits
  (super-resolution); the pixel size is divided accordingly.

No gain reference is applied (EER gain files are separate). The pixel size
comes from the acquisition metadata (``sensorPixelSize.width``, in metres).

Reference: Guo, H. et al. "Electron-event representation data enable efficient
cryoEM file storage with full preservation of spatial and temporal resolution",
IUCrJ 7, 860-869 (2020).
"""

from __future__ import annotations

import numpy as np

from emcs.errors import EmcsError
from emcs.io.stack import Stack, _describe, to_angstrom

EER_UPSAMPLING = (1, 2, 4)
_EER_COMPRESSIONS = (65000, 65001, 65002)
_BIGTIFF_MAGIC = (b"II+\x00", b"MM\x00+")


def is_eer(path: str) -> bool:
    """True if ``path`` is a BigTIFF of EER-compressed fractions (any suffix)."""
    with open(path, "rb") as fh:
        if fh.read(4) not in _BIGTIFF_MAGIC:
            return False
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            pages = tif.pages
            return bool(pages.first.is_eer) or any(
                getattr(pages[k], "compression", 0) in _EER_COMPRESSIONS
                for k in range(min(2, len(pages)))
            )
    except Exception:
        return False


def _check_options(eer_frames: int, eer_upsampling: int, path: str) -> None:
    if int(eer_frames) != eer_frames or eer_frames < 1:
        raise EmcsError(f"eer_frames must be an integer >= 1, got {eer_frames}", path,
                        param="eer_frames")
    if eer_upsampling not in EER_UPSAMPLING:
        raise EmcsError(
            f"eer_upsampling must be 1, 2 or 4, got {eer_upsampling}", path, param="eer_upsampling"
        )


def _eer_pixel_size(meta: dict, upsampling: int) -> float | None:
    value = to_angstrom(meta.get("sensorPixelSize.width"),
                        meta.get("sensorPixelSize.width.unit", "m"))
    return None if value is None else value / upsampling


def open_eer(path: str, eer_frames: int = 1, eer_upsampling: int = 1) -> Stack:
    """Open a Falcon EER movie as a lazy stack of rendered frames.

    Parameters
    ----------
    path : str
        The ``.eer`` file.
    eer_frames : int
        Raw EER fractions summed into each output frame.
    eer_upsampling : int
        1, 2 or 4: output grid relative to the physical sensor pixels.

    Returns
    -------
    Stack
        ``uint16`` counts of shape (fractions // eer_frames, H*u, W*u).
    """
    _check_options(eer_frames, eer_upsampling, path)
    import tifffile

    superres = {1: 0, 2: 1, 4: 2}[eer_upsampling]
    try:
        tif = tifffile.TiffFile(path, superres=superres)
        series = tif.series[0]
        meta = tif.eer_metadata or {}
        fractions = 1 if len(series.shape) == 2 else int(series.shape[0])
        frame_shape = tuple(int(s) for s in series.shape[-2:])
    except Exception as exc:
        raise EmcsError(f"not a readable EER file ({_describe(exc)})", path) from exc
    n_out = fractions // eer_frames
    if n_out == 0:
        tif.close()
        raise EmcsError(
            f"eer_frames is {eer_frames} but the file has only {fractions} EER fractions",
            path, param="eer_frames",
        )
    pages = series.pages

    def reader(a: int, b: int) -> np.ndarray:
        out = np.zeros((b - a,) + frame_shape, np.uint16)
        for k in range(a, b):
            for i in range(k * eer_frames, (k + 1) * eer_frames):
                out[k - a] += pages[i].asarray()
        return out

    metadata = {
        "format": "eer",
        "access": "decode",
        "eer_fractions": fractions,
        "eer_frames": int(eer_frames),
        "eer_upsampling": int(eer_upsampling),
        "eer_dropped_fractions": fractions - n_out * eer_frames,
        "_close": tif.close,
    }
    for key in ("exposureTime", "totalDose", "numberOfFrames", "commercialName"):
        if key in meta:
            metadata[f"eer_{key}"] = meta[key]
    return Stack(path, (n_out,) + frame_shape, np.dtype("uint16"),
                 _eer_pixel_size(meta, eer_upsampling), reader, metadata)

"""Encode and decode frame stacks with one setting of a standard image codec.

The codec layer under :mod:`emcs.compare.codecs` (which searches a byte
budget): JPEG, JPEG 2000 or JPEG XL through :mod:`imagecodecs`, one thread,
one setting for every frame.

Quality knobs (higher quality = more bytes):

- ``jpeg``: libjpeg quality, integer 1 .. 100 (baseline JPEG, 8-bit grey,
  optimized Huffman tables);
- ``jpeg2000``: OpenJPEG's PSNR target in dB, or lossless (reversible 5/3
  wavelet); raw J2K codestream;
- ``jpegxl``: libjxl butteraugli distance (lower is better), or lossless;
  effort 7 (the libjxl default).

Bit depth and stretch (``stretch="auto"``):

- uint8 data is encoded as it is by all three codecs (no stretch, 0 extra bytes);
- any other data (uint16, int, float) is first mapped by a per-frame linear
  stretch ``v = round((x - lo) / (hi - lo) * M)`` with ``lo, hi`` the
  frame's min and max stored as two float32 (8 bytes per frame, counted) and
  ``M`` = 255 (JPEG) or 65535 (JPEG 2000, JPEG XL). Perceptual codecs need
  this: their quality settings are relative to the full range of the integer
  type, and EM data often use a small part of it. For integer data spanning
  at most ``M + 1`` values the stretch is exactly invertible; for float data
  and wider integer data the quantization to ``M + 1`` levels is a real loss
  and it shows in the scores. So uint16 data reach JPEG 2000 / JPEG XL
  losslessly as 16-bit, and JPEG (8-bit here) as 8-bit.
- ``stretch="global"`` uses one ``lo, hi`` for the whole stack (8 bytes),
  ``"frame"`` forces the per-frame stretch, ``"none"`` encodes the data as
  they are (allowed only where the codec takes the dtype).
- The lossless modes (JPEG 2000, JPEG XL) always get uint8 / uint16 data
  unstretched (the stretch would only spread the values apart and cost
  bytes); other data are stretched to 16 bits first, so "lossless" then means
  lossless on the 16-bit quantized frames.

Decoding inverts the stretch with the same float32 parameters and returns the
input dtype (rounded and clipped for integer types).

Examples
--------
>>> import numpy as np
>>> frames = np.arange(2 * 16 * 16, dtype=np.uint16).reshape(2, 16, 16)
>>> streams, params, mode = encode_frames(frames, "jpeg2000", None, lossless=True)
>>> mode, bool((decode_frames(streams, "jpeg2000", params, frames.dtype) == frames).all())
('none', True)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "CODECS",
    "CODEC_LABELS",
    "PARAMETERS",
    "codec_dtype",
    "decode_frames",
    "encode_frames",
    "encode_prepared",
    "prepare_frames",
    "side_bytes",
    "stretch_mode",
    "takes_as_is",
]

#: Codec names, in display order.
CODECS = ("jpeg", "jpeg2000", "jpegxl")

#: Names for tables and plots.
CODEC_LABELS = {"jpeg": "JPEG", "jpeg2000": "JPEG 2000", "jpegxl": "JPEG XL"}

#: The quality knob's name per codec (``BaselineResult.parameter``).
PARAMETERS = {
    "jpeg": "quality (1-100)",
    "jpeg2000": "PSNR target (dB)",
    "jpegxl": "distance (lower is better)",
}

JPEGXL_EFFORT = 7
_STRETCH_BYTES = 8  # two float32: lo, hi


# --------------------------------------------------------------------------- codecs
def _encoder(codec: str, setting, lossless: bool) -> Callable[[np.ndarray], bytes]:
    import imagecodecs as ic

    if codec == "jpeg":
        q = int(setting)
        return lambda f: ic.jpeg8_encode(f, level=q, optimize=True)
    if codec == "jpeg2000":
        if lossless:
            return lambda f: ic.jpeg2k_encode(
                f, level=0, reversible=True, codecformat="J2K", numthreads=1
            )
        target = float(setting)
        return lambda f: ic.jpeg2k_encode(
            f, level=target, codecformat="J2K", numthreads=1
        )
    if codec == "jpegxl":
        if lossless:
            return lambda f: ic.jpegxl_encode(
                f, lossless=True, effort=JPEGXL_EFFORT, numthreads=1
            )
        d = float(setting)
        return lambda f: ic.jpegxl_encode(f, distance=d, effort=JPEGXL_EFFORT, numthreads=1)
    raise ValueError(f"unknown codec {codec!r}; choose from {', '.join(CODECS)}")


def _decoder(codec: str) -> Callable[[bytes], np.ndarray]:
    import imagecodecs as ic

    if codec == "jpeg":
        return ic.jpeg8_decode
    if codec == "jpeg2000":
        return lambda b: ic.jpeg2k_decode(b, numthreads=1)
    if codec == "jpegxl":
        return lambda b: ic.jpegxl_decode(b, numthreads=1)
    raise ValueError(f"unknown codec {codec!r}; choose from {', '.join(CODECS)}")


# --------------------------------------------------------------------------- stretch
def codec_dtype(codec: str, dtype: np.dtype) -> np.dtype:
    """The integer type handed to the codec: uint8 for JPEG and uint8 data, else uint16."""
    if codec == "jpeg":
        return np.dtype(np.uint8)
    return np.dtype(np.uint8) if dtype == np.uint8 else np.dtype(np.uint16)


def takes_as_is(codec: str, dtype: np.dtype) -> bool:
    """True when the codec can encode this dtype without a stretch."""
    return dtype == np.uint8 or (dtype == np.uint16 and codec != "jpeg")


def stretch_mode(codec: str, dtype: np.dtype, stretch: str) -> str:
    """The stretch actually used ("none", "frame" or "global") for a requested ``stretch``."""
    if stretch not in ("auto", "frame", "global", "none"):
        raise ValueError(f"stretch must be auto, frame, global or none, not {stretch!r}")
    native = takes_as_is(codec, dtype)
    if stretch == "auto":
        return "none" if dtype == np.uint8 else "frame"
    if stretch == "none" and not native:
        raise ValueError(
            f"{CODEC_LABELS[codec]} cannot encode {dtype} data as they are; use a stretch"
        )
    return stretch


def _stretch_params(frames: np.ndarray, mode: str) -> np.ndarray | None:
    """(T, 2) float32 array of (lo, hi) per frame, or None for no stretch."""
    if mode == "none":
        return None
    if mode == "global":
        lo, hi = float(np.min(frames)), float(np.max(frames))
        params = np.tile(np.array([lo, hi], np.float32), (frames.shape[0], 1))
    else:
        flat = frames.reshape(frames.shape[0], -1)
        params = np.stack([flat.min(axis=1), flat.max(axis=1)], axis=1).astype(np.float32)
    if not np.all(np.isfinite(params)):
        raise ValueError("the frames contain NaN or infinite values")
    return params


def _to_codec(frame: np.ndarray, lohi, cdtype: np.dtype) -> np.ndarray:
    if lohi is None:
        return np.ascontiguousarray(frame, dtype=cdtype)
    lo, hi = float(lohi[0]), float(lohi[1])
    top = float(np.iinfo(cdtype).max)
    if hi <= lo:
        return np.zeros(frame.shape, cdtype)
    v = (frame.astype(np.float64) - lo) * (top / (hi - lo))
    return np.clip(np.rint(v), 0, top).astype(cdtype)


def _from_codec(v: np.ndarray, lohi, out_dtype: np.dtype) -> np.ndarray:
    if lohi is None:
        x = v.astype(np.float64)
    else:
        lo, hi = float(lohi[0]), float(lohi[1])
        top = float(np.iinfo(v.dtype).max)
        x = v.astype(np.float64) * ((hi - lo) / top) + lo if hi > lo else np.full(v.shape, lo)
    if np.issubdtype(out_dtype, np.integer):
        info = np.iinfo(out_dtype)
        return np.clip(np.rint(x), info.min, info.max).astype(out_dtype)
    return x.astype(out_dtype)


# --------------------------------------------------------------------------- encode / decode
def encode_frames(
    frames: np.ndarray,
    codec: str,
    setting,
    lossless: bool = False,
    stretch: str = "auto",
    limit: int | None = None,
) -> tuple[list[bytes] | None, np.ndarray | None, str]:
    """Encode all frames with one codec setting.

    Parameters
    ----------
    frames : ndarray (T, H, W)
    codec : str
        One of :data:`CODECS`.
    setting : float
        The quality knob (see the module table); ignored when ``lossless``.
    lossless : bool
        Use the codec's lossless mode (JPEG 2000, JPEG XL); with "auto",
        uint8 / uint16 data are then not stretched.
    stretch : str
        "auto", "frame", "global" or "none" (module notes).
    limit : int, optional
        Stop and return ``None`` codestreams as soon as the total (with
        stretch bytes) exceeds this many bytes.

    Returns
    -------
    (codestreams or None, stretch params (T, 2) float32 or None, stretch mode)
    """
    frames = np.asarray(frames)
    if lossless and stretch == "auto" and takes_as_is(codec, frames.dtype):
        stretch = "none"
    prepared, params, mode = prepare_frames(frames, codec, stretch)
    return encode_prepared(prepared, codec, setting, lossless, mode, limit), params, mode


def prepare_frames(frames: np.ndarray, codec: str, stretch: str):
    """(frames in the codec's dtype, stretch params or None, stretch mode)."""
    mode = stretch_mode(codec, frames.dtype, stretch)
    params = _stretch_params(frames, mode)
    cdtype = codec_dtype(codec, frames.dtype)
    if params is None:
        return np.ascontiguousarray(frames, dtype=cdtype), None, mode
    prepared = np.empty(frames.shape, cdtype)
    for i, f in enumerate(frames):
        prepared[i] = _to_codec(f, params[i], cdtype)
    return prepared, params, mode


def encode_prepared(prepared, codec, setting, lossless, mode, limit) -> list[bytes] | None:
    """Codestreams of frames from :func:`prepare_frames`; None once over ``limit`` bytes."""
    enc = _encoder(codec, setting, lossless)
    total = side_bytes(mode, len(prepared))
    out = []
    for f in prepared:
        b = bytes(enc(f))
        out.append(b)
        total += len(b)
        if limit is not None and total > limit:
            return None
    return out


def decode_frames(
    codestreams: list[bytes], codec: str, params: np.ndarray | None, dtype
) -> np.ndarray:
    """Decode codestreams from :func:`encode_frames` back to a (T, H, W) stack of ``dtype``."""
    dec = _decoder(codec)
    dtype = np.dtype(dtype)
    frames = [
        _from_codec(np.asarray(dec(b)), None if params is None else params[i], dtype)
        for i, b in enumerate(codestreams)
    ]
    return np.stack(frames)


def side_bytes(mode: str, n_frames: int) -> int:
    """Bytes of stretch parameters counted for ``n_frames`` frames in stretch ``mode``."""
    if mode == "none":
        return 0
    return _STRETCH_BYTES if mode == "global" else _STRETCH_BYTES * n_frames

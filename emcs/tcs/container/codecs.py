"""Measurement codecs: lossless packing (JPEG XL, zstd, mask-predictive) and Anscombe quantization.

With ``pack`` the measurements are coded losslessly, one member each
(lossless JPEG XL for uint8/uint16 sums, zstd otherwise), about 1.3-1.9x
smaller for noisy camera counts. ``pack="predictive"`` divides the known
masks out before predicting each value (:mod:`emcs.tcs.container.predictive`,
about 0.5-0.75x the bytes of lossless JPEG XL). With ``quantize`` integer
counts are first quantized in the Anscombe domain (Anscombe, Biometrika 1948)
with a step that is a fraction of their own shot noise: lossy, but the error
is bounded by the noise already in the data (about 1.6-2x smaller again).
"""

from __future__ import annotations

import numpy as np

from emcs.errors import EmcsError

#: ``pack`` choices of :func:`emcs.tcs.encode.encode_stack` (``emcs encode --pack``)
PACK_CHOICES = ("none", "zstd", "jpegxl", "predictive")
_JXL_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))


def check_packing(pack: str | None, quantize: float | None, dtype=None,
                  path=None) -> tuple[str, float | None]:
    """Validate a ``pack`` choice and a ``quantize`` step; returns them normalised.

    ``pack`` None means ``"predictive"`` with a quantize step and ``"none"``
    without; case and spaces are ignored. ``quantize`` None is lossless, else
    a step in (0, 4] shot-noise units, which needs a codec and (with
    ``dtype``, of the frames or of their sums) integer counts; ``path`` names
    the file in that error.

    Examples
    --------
    >>> check_packing(None, 1), check_packing(" JPEGXL", None)
    (('predictive', 1.0), ('jpegxl', None))
    """
    if pack is None:
        pack = "predictive" if quantize is not None else "none"
    norm = str(pack).strip().lower()
    if norm not in PACK_CHOICES:
        raise EmcsError(f"pack must be one of {', '.join(PACK_CHOICES)}, got {pack!r}", param="pack")
    if quantize is None:
        return norm, None
    step = float(quantize)
    if not (np.isfinite(step) and 0 < step <= 4):
        raise EmcsError(f"quantize must be a step in (0, 4] (shot-noise units), got {step:g}",
                        param="quantize")
    if norm == "none":
        raise EmcsError("pack must be predictive, jpegxl or zstd to quantize (the codes only get "
                        "smaller once coded), got 'none'", param="pack")
    if dtype is not None and np.dtype(dtype).kind not in "iub":
        raise EmcsError("quantize needs integer counts, but the frames are floating point", path,
                        param="quantize")
    return norm, step


def packed_codec(pack: str, dtype) -> str | None:
    """The codec ``pack`` uses for measurements made in ``dtype`` (None: stored plain).

    ``jpegxl`` codes integer measurements losslessly with JPEG XL, each in
    uint8 or uint16, and zstd-codes the ``.npy`` of one that needs more or is
    signed (:func:`member_codec`; JPEG XL has no lossless integer mode beyond
    16 bits); ``predictive`` (mask-aware prediction,
    :mod:`emcs.tcs.container.predictive`) codes any integer dtype; float sums
    and ``zstd`` get ``zstd-npy``.
    """
    dtype = np.dtype(dtype)
    if pack == "none":
        return None
    if pack == "predictive" and dtype.kind in "iu":
        return "mask-predictive"
    return "jpegxl-lossless" if pack == "jpegxl" and dtype.kind in "iu" else "zstd-npy"


def member_codec(codec: str, dtype) -> str:
    """The codec of one member of a ``codec`` container stored in ``dtype`` (JPEG XL: uint8/uint16).

    Examples
    --------
    >>> member_codec("jpegxl-lossless", np.uint16), member_codec("jpegxl-lossless", np.uint32)
    ('jpegxl-lossless', 'zstd-npy')
    """
    if codec == "jpegxl-lossless" and np.dtype(dtype) not in _JXL_DTYPES:
        return "zstd-npy"
    return codec


def anscombe_codes(y: np.ndarray, step: float) -> np.ndarray:
    """Quantize non-negative counts with a step proportional to their shot noise.

    The Anscombe transform ``a = 2 sqrt(y + 3/8)`` turns Poisson counts into
    values of unit noise standard deviation; ``round(a / step)`` is the code.
    The added error has the variance ``step**2 / 12`` of the shot noise's
    (0.08 for step 1, i.e. +4 % noise amplitude) at every brightness, and
    the codes need about ``log2(sqrt(y) / step)`` fewer bits than the counts.
    Assumes counts with Poisson noise (a counting camera, or any detector whose
    unit is one electron); a larger gain only makes the step relatively smaller.

    Examples
    --------
    >>> anscombe_codes(np.array([0, 1, 100, 10000]), 1.0).tolist()
    [1, 2, 20, 200]
    """
    return np.rint(2.0 * np.sqrt(np.asarray(y, np.float64) + 0.375) / step).astype(np.int64)


def anscombe_values(codes: np.ndarray, step: float) -> np.ndarray:
    """Counts (float32) for codes of :func:`anscombe_codes`: the algebraic inverse, >= 0.

    Examples
    --------
    >>> y = np.arange(0, 5000, 7)
    >>> bool(np.all(np.abs(anscombe_values(anscombe_codes(y, 1.0), 1.0) - y) <= 0.5 * np.sqrt(y + 0.375) + 0.3))
    True
    """
    a = np.asarray(codes, np.float64) * (0.5 * step)
    return np.maximum(a * a - 0.375, 0.0).astype(np.float32)


def encode_measurement(y: np.ndarray, codec: str, mask_sum: np.ndarray | None = None,
                       step: float | None = None) -> bytes:
    """Losslessly code one (H, W) measurement.

    ``mask-predictive`` needs the measurement's ``mask_sum`` (open masks per
    pixel) and the Anscombe ``step`` of quantized codes (None: raw sums).
    """
    import imagecodecs

    if codec == "mask-predictive":
        from emcs.tcs.container.predictive import encode_predictive

        return encode_predictive(y, mask_sum, step)
    if codec == "jpegxl-lossless":
        return bytes(imagecodecs.jpegxl_encode(np.ascontiguousarray(y), lossless=True, effort=1))
    if codec == "zstd":
        return bytes(imagecodecs.zstd_encode(np.ascontiguousarray(y, y.dtype.newbyteorder("<")).tobytes(), level=3))
    if codec == "zstd-npy":
        import io

        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(y, y.dtype.newbyteorder("<")), allow_pickle=False)
        return bytes(imagecodecs.zstd_encode(buf.getvalue(), level=3))
    raise ValueError(f"unknown codec {codec!r}")


def decode_measurement(data: bytes, codec: str, dtype: np.dtype, shape: tuple[int, int],
                       mask_sum: np.ndarray | None = None, step: float | None = None) -> np.ndarray:
    """Inverse of :func:`encode_measurement`; raises ValueError on corrupt data."""
    import imagecodecs

    if codec in ("npy", "zstd-npy"):
        try:
            raw = imagecodecs.zstd_decode(data) if codec == "zstd-npy" else data
        except Exception as exc:  # the codec raises its own error types
            raise ValueError(str(exc) or type(exc).__name__) from exc
        return _decode_npy(bytes(raw), dtype, shape)

    try:
        if codec == "mask-predictive":
            from emcs.tcs.container.predictive import decode_predictive

            y = decode_predictive(data, mask_sum, step, shape)
            info = np.iinfo(dtype)
            if y.size and (int(y.min()) < info.min or int(y.max()) > info.max):
                raise ValueError(f"decoded values outside {dtype}")
            y = y.astype(dtype)
        elif codec == "jpegxl-lossless":
            y = np.asarray(imagecodecs.jpegxl_decode(data))
            if np.can_cast(y.dtype, dtype):  # version 5: a member may be narrower (uint8)
                y = y.astype(dtype)
        else:
            raw = imagecodecs.zstd_decode(data)
            if len(raw) != int(np.prod(shape)) * dtype.itemsize:
                raise ValueError(f"{len(raw)} bytes")
            y = np.frombuffer(raw, dtype.newbyteorder("<")).reshape(shape)
    except Exception as exc:  # the codecs raise their own error types
        raise ValueError(str(exc) or type(exc).__name__) from exc
    if y.shape != tuple(shape) or y.dtype.newbyteorder("=") != dtype.newbyteorder("="):
        raise ValueError(f"decoded {y.dtype} {y.shape}, expected {dtype} {tuple(shape)}")
    return y.astype(dtype, copy=False)


def _decode_npy(data: bytes, dtype: np.dtype, shape: tuple[int, int]) -> np.ndarray:
    """A version-5 ``.npy`` member (no pickle) in ``dtype``: its own dtype may be narrower."""
    import io

    f = io.BytesIO(data)
    try:
        np.lib.format.read_magic(f)
        mshape, fortran, mdtype = np.lib.format.read_array_header_1_0(f)
    except ValueError as exc:
        raise ValueError(f"bad array header ({exc})") from exc
    if mdtype.hasobject:
        raise ValueError("the member holds pickled (object) data; emcs never unpickles files")
    if mshape != tuple(shape) or fortran or not np.can_cast(mdtype, dtype):
        raise ValueError(f"member holds {mdtype} {mshape}, expected up to {dtype} {tuple(shape)}")
    y = np.frombuffer(data, mdtype, offset=f.tell())
    if y.size != int(np.prod(shape)):
        raise ValueError(f"{y.size} values, expected {int(np.prod(shape))}")
    return y.reshape(shape).astype(np.dtype(dtype).newbyteorder("="))

"""The TCS measurement container: one versioned ``.npz`` file per encoded movie.

A container is a plain ZIP archive of ``.npy`` members (so ``numpy.load(path,
allow_pickle=False)`` opens it) holding:

``measurements.npy``
    (N, H, W) integer (integer input) or float32 (float input) measurements,
    group k being ``Y_k = sum_b C_b X_{kB+b}`` over its ``counts[k]`` frames.
``counts.npy``
    (N,) int64: frames per group (B except perhaps the last group).
``meta.npy``
    uint8 array holding UTF-8 JSON: the metadata (see ``docs/container.md``).
``masks_packed.npy``
    only for explicit masks: the (B, H, W) binary mask, bit-packed.

Members are stored uncompressed, so the measurements can be memory-mapped.
With ``pack`` (format version 2) the measurements are instead coded
losslessly one per member, ``measurements/00000000.jxl`` ... (lossless JPEG
XL for uint8/uint16 sums, zstd otherwise) and decoded on access
(:class:`PackedMeasurements`): about 1.3-1.9x smaller files for noisy
camera counts, at the cost of codec time. With ``quantize`` (format version 3)
integer counts are first quantized in the Anscombe domain with a step that is a
fraction of their own shot noise (:func:`anscombe_codes`): lossy, but the error
is bounded by the noise already in the data (about 1.6-2x smaller again).
With ``pack="predictive"`` (format version 4) integer measurements are coded
with :mod:`emcs.tcs.predictive`, which divides the known masks out before
predicting each value (about 0.5-0.75x the bytes of lossless JPEG XL); the
reader needs the masks to decode them, which every container carries.

:func:`load_container` validates everything and refuses (with
:class:`~emcs.errors.EmcsError`) newer format versions, bad checksums, missing
fields, corrupt archives and pickled (object) arrays. :class:`ContainerWriter`
writes a container while the measurements are being produced.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np

from emcs.errors import EmcsError
from emcs.tcs.masks import MASK_ALGORITHM, make_masks, pack_masks, unpack_masks

FORMAT_NAME = "emcs-tcs-measurements"
FORMAT_VERSION = 4  # newest version this emcs reads; unpacked containers are still written as 1
UNPACKED_VERSION = 1
PACKED_VERSION = 2
QUANTIZED_VERSION = 3
PREDICTIVE_VERSION = 4
#: measurement quantizations this emcs reads
QUANTIZATIONS = ("anscombe",)
#: lossless codecs for packed measurements: name -> member suffix
CODECS = {"jpegxl-lossless": ".jxl", "zstd": ".zst", "mask-predictive": ".emp"}
#: ``emcs encode --pack`` choices
PACK_CHOICES = ("none", "zstd", "jpegxl", "predictive")
PACKED_PREFIX = "measurements/"
MEAS_MEMBER = "measurements.npy"
COUNTS_MEMBER = "counts.npy"
META_MEMBER = "meta.npy"
MASK_MEMBER = "masks_packed.npy"
KNOWN_MASK_ALGORITHMS = (MASK_ALGORITHM,)
_CHUNK_BYTES = 1 << 24

# meta fields every version-1 container must have
_REQUIRED = {
    "format": str,
    "format_version": int,
    "emcs_version": str,
    "B": int,
    "n_measurements": int,
    "frame_shape": list,
    "measurement_dtype": str,
    "measurement_sha256": str,
    "mask": dict,
    "input": dict,
}
_REQUIRED_INPUT = ("dtype", "shape", "value_range", "pixel_size")


# ----------------------------------------------------------------------------- helpers
def _json_array(obj: dict) -> np.ndarray:
    return np.frombuffer(json.dumps(obj, sort_keys=True).encode("utf-8"), dtype=np.uint8).copy()


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> dict:
    return {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype).newbyteorder("<")),
        "fortran_order": False,
        "shape": tuple(int(s) for s in shape),
    }


def _write_member(zf: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array)
    with zf.open(name, "w", force_zip64=True) as f:
        np.lib.format.write_array_header_1_0(f, _npy_header(array.dtype, array.shape))
        f.write(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())


def smallest_int_dtype(lo: int, hi: int) -> np.dtype:
    """The smallest integer dtype holding every value in [lo, hi] (unsigned preferred).

    Examples
    --------
    >>> smallest_int_dtype(0, 2550), smallest_int_dtype(-3, 100)
    (dtype('uint16'), dtype('int8'))
    """
    for name in ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64"):
        info = np.iinfo(name)
        if info.min <= lo and hi <= info.max:
            return np.dtype(name)
    raise ValueError(f"no integer dtype holds [{lo}, {hi}]")


# ----------------------------------------------------------------------------- packed measurements
_JXL_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))


def check_pack(pack: str) -> str:
    """Validate an ``emcs encode --pack`` choice (case and spaces ignored); returns it normalised."""
    norm = str(pack).strip().lower()
    if norm not in PACK_CHOICES:
        raise EmcsError(f"--pack must be one of {', '.join(PACK_CHOICES)}, got {pack!r}")
    return norm


def packed_codec(pack: str, dtype) -> str | None:
    """The codec ``pack`` uses for measurements of ``dtype`` (None: stored plain).

    ``jpegxl`` codes uint8/uint16 losslessly with JPEG XL and falls back to zstd
    for other dtypes (JPEG XL has no lossless integer mode beyond 16 bits);
    ``predictive`` (mask-aware prediction, :mod:`emcs.tcs.predictive`) codes
    any integer dtype and falls back to zstd for float sums.
    """
    dtype = np.dtype(dtype)
    if pack == "none":
        return None
    if pack == "predictive" and dtype.kind in "iu":
        return "mask-predictive"
    return "jpegxl-lossless" if pack == "jpegxl" and dtype in _JXL_DTYPES else "zstd"


def packed_member(k: int, codec: str) -> str:
    """Member name of packed measurement ``k``."""
    return f"{PACKED_PREFIX}{int(k):08d}{CODECS[codec]}"


def check_quantize(step: float | None, pack: str, dtype=None, path=None) -> float | None:
    """Validate an ``emcs encode --quantize`` step (None: lossless); returns it as a float.

    With ``dtype`` (of the frames, or of their sums) also check that the data are
    integer counts; ``path`` names the file in the error.
    """
    if step is None:
        return None
    step = float(step)
    if not (np.isfinite(step) and 0 < step <= 4):
        raise EmcsError(f"--quantize must be a step in (0, 4] (shot-noise units), got {step:g}")
    if pack == "none":
        raise EmcsError("--quantize needs --pack predictive, jpegxl or zstd (the codes only get smaller once coded)")
    if dtype is not None and np.dtype(dtype).kind not in "iub":
        raise EmcsError(f"--quantize needs integer counts, but the frames are {np.dtype(dtype).name}", path)
    return step


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
        from emcs.tcs.predictive import encode_predictive

        return encode_predictive(y, mask_sum, step)
    if codec == "jpegxl-lossless":
        return bytes(imagecodecs.jpegxl_encode(np.ascontiguousarray(y), lossless=True, effort=1))
    if codec == "zstd":
        return bytes(imagecodecs.zstd_encode(np.ascontiguousarray(y, y.dtype.newbyteorder("<")).tobytes(), level=3))
    raise ValueError(f"unknown codec {codec!r}")


def decode_measurement(data: bytes, codec: str, dtype: np.dtype, shape: tuple[int, int],
                       mask_sum: np.ndarray | None = None, step: float | None = None) -> np.ndarray:
    """Inverse of :func:`encode_measurement`; raises ValueError on corrupt data."""
    import imagecodecs

    try:
        if codec == "mask-predictive":
            from emcs.tcs.predictive import decode_predictive

            y = decode_predictive(data, mask_sum, step, shape)
            info = np.iinfo(dtype)
            if y.size and (int(y.min()) < info.min or int(y.max()) > info.max):
                raise ValueError(f"decoded values outside {dtype}")
            y = y.astype(dtype)
        elif codec == "jpegxl-lossless":
            y = np.asarray(imagecodecs.jpegxl_decode(data))
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


def group_mask_sum(mask: dict, packed_mask: np.ndarray | None, B: int, H: int, W: int,
                   n_frames: int) -> np.ndarray:
    """Open masks per pixel of a group of ``n_frames`` frames (it used the first ``n_frames`` masks).

    ``mask`` is the container's ``meta["mask"]``, ``packed_mask`` its bit-packed
    explicit mask (None for generated masks). Generated masks are made in row
    blocks, so memory stays bounded for large frames.

    Examples
    --------
    >>> m = {"kind": "generated", "algorithm": MASK_ALGORITHM, "seed": 7, "density": 0.5}
    >>> bool((group_mask_sum(m, None, 4, 3, 5, 2) == make_masks(7, 4, 3, 5)[:2].sum(0)).all())
    True
    """
    from emcs.tcs.predictive import open_count

    if mask["kind"] != "generated":
        return open_count(unpack_masks(packed_mask, (B, H, W))[:n_frames])
    out = np.empty((H, W), np.uint8 if n_frames < 256 else np.uint16)
    rows = max(1, _CHUNK_BYTES // max(1, n_frames * W))
    for r0 in range(0, H, rows):
        r1 = min(H, r0 + rows)
        block = make_masks(int(mask["seed"]), B, H, W, float(mask["density"]),
                           frames=range(n_frames), rows=(r0, r1))
        out[r0:r1] = open_count(block)
    return out


class MaskSums:
    """The mask sum of each measurement of a container, computed once per group size.

    Picklable (plain data), so it travels with :class:`PackedMeasurements` to
    a Dask worker. ``counts[k]`` frames of measurement ``k`` used the first
    ``counts[k]`` masks, so a short last group has its own sum.
    """

    def __init__(self, mask: dict, packed_mask: np.ndarray | None, B: int, frame_shape: tuple[int, int],
                 counts: np.ndarray):
        self.mask, self.packed_mask, self.B = mask, packed_mask, int(B)
        self.frame_shape = (int(frame_shape[0]), int(frame_shape[1]))
        self.counts = np.asarray(counts)
        self._cache: dict[int, np.ndarray] = {}

    def __call__(self, k: int) -> np.ndarray:
        n = int(self.counts[k])
        if n not in self._cache:
            self._cache[n] = group_mask_sum(self.mask, self.packed_mask, self.B, *self.frame_shape, n)
        return self._cache[n]


class PackedMeasurements:
    """The (N, H, W) measurements of a packed container, decoded on access.

    Indexing with an integer or a slice (step 1) reads and decodes just those
    members; ``np.asarray`` decodes all of them. Picklable (it opens the
    archive per access), so a Dask task can carry it. With an Anscombe
    ``step`` the members hold quantization codes (``stored_dtype``) and the
    measurements come back as float32 counts (:func:`anscombe_values`).
    The ``mask-predictive`` codec needs the mask sums (:class:`MaskSums`).
    """

    def __init__(self, path: str, codec: str, dtype: np.dtype, shape: tuple[int, int, int],
                 step: float | None = None, mask_sums: MaskSums | None = None):
        self.path, self.codec, self.step = path, codec, step
        self.stored_dtype = np.dtype(dtype)
        self.dtype = np.dtype(np.float32) if step else self.stored_dtype
        self.shape = tuple(int(v) for v in shape)
        self.ndim = 3
        if codec == "mask-predictive" and mask_sums is None:
            raise ValueError("the mask-predictive codec needs the mask sums")
        self.mask_sums = mask_sums

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def _read(self, zf: zipfile.ZipFile, k: int) -> np.ndarray:
        codes = self._read_stored(zf, k)
        return anscombe_values(codes, self.step) if self.step else codes

    def _read_stored(self, zf: zipfile.ZipFile, k: int) -> np.ndarray:
        name = packed_member(k, self.codec)
        try:
            S = self.mask_sums(k) if self.mask_sums is not None else None
            return decode_measurement(zf.read(name), self.codec, self.stored_dtype, self.shape[1:], S, self.step)
        except KeyError as exc:
            raise EmcsError(f"member {name} is missing", self.path) from exc
        except (ValueError, zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
            raise EmcsError(f"checksum mismatch: member {name} is corrupt ({exc})", self.path) from exc

    def __getitem__(self, key):
        N = self.shape[0]
        if isinstance(key, (int, np.integer)):
            k = int(key) + (N if key < 0 else 0)
            if not 0 <= k < N:
                raise IndexError(key)
            with zipfile.ZipFile(self.path) as zf:
                return self._read(zf, k)
        if isinstance(key, slice):
            start, stop, step = key.indices(N)
            if step != 1:
                raise IndexError("packed measurements support slices with step 1 only")
            out = np.empty((max(0, stop - start), *self.shape[1:]), self.dtype)
            with zipfile.ZipFile(self.path) as zf:
                for i, k in enumerate(range(start, stop)):
                    out[i] = self._read(zf, k)
            return out
        raise IndexError(f"unsupported index {key!r}")

    def __array__(self, dtype=None, copy=None):
        a = self[:]
        return a if dtype is None else a.astype(dtype)

    def __iter__(self):
        with zipfile.ZipFile(self.path) as zf:  # one open archive for the whole pass
            for k in range(self.shape[0]):
                yield self._read(zf, k)

    def stored(self):
        """Iterate over the members as stored (the codes when quantized), in one pass."""
        with zipfile.ZipFile(self.path) as zf:
            for k in range(self.shape[0]):
                yield self._read_stored(zf, k)


# ----------------------------------------------------------------------------- writing
class ContainerWriter:
    """Write a container while its measurements are produced (bounded memory).

    Measurements are streamed into the ``measurements.npy`` member in
    ``stream_dtype``. When :meth:`finish` learns the actual range of the sums,
    and a smaller integer dtype holds it, the member is rewritten once in that
    dtype (a streaming copy of the measurements only, never of the movie).

    Parameters
    ----------
    path : str
        Final file; the caller provides a temporary path (see ``emcs.io.atomic_output``).
    n, H, W : int
        Number of measurements and frame size.
    stream_dtype : numpy dtype
        Dtype the measurements are produced in (the worst case for the input).
    narrow : bool
        Rewrite in the smallest integer dtype holding the actual sums.
    pack : {"none", "predictive", "jpegxl", "zstd"}
        Code the finished measurements losslessly, one member each (format
        version 2; 4 for ``predictive``, which divides the known masks out
        before predicting, :mod:`emcs.tcs.predictive`); ``jpegxl`` falls back
        to zstd for dtypes other than uint8/uint16, ``predictive`` for float sums.
    quantize : float, optional
        Anscombe step (:func:`anscombe_codes`): store quantization codes of the
        (non-negative integer) sums instead of the sums (format version 3;
        needs ``pack``). The checksum covers the codes.
    """

    def __init__(self, path: str, n: int, H: int, W: int, stream_dtype, narrow: bool = True,
                 pack: str = "none", quantize: float | None = None):
        self.pack = check_pack(pack)
        self.quantize = check_quantize(quantize, self.pack, stream_dtype)
        self.path = os.fspath(path)
        self.shape = (int(n), int(H), int(W))
        self.stream_dtype = np.dtype(stream_dtype)
        self.narrow = narrow and self.stream_dtype.kind in "iu"
        self._zf = zipfile.ZipFile(self.path, "w", zipfile.ZIP_STORED, allowZip64=True)
        self._f = self._zf.open(MEAS_MEMBER, "w", force_zip64=True)
        np.lib.format.write_array_header_1_0(self._f, _npy_header(self.stream_dtype, self.shape))
        self._sha = hashlib.sha256()
        self._written = 0
        self._lo = None
        self._hi = None

    def write(self, y: np.ndarray) -> None:
        """Append measurements of shape (m, H, W) (or one (H, W) measurement)."""
        y = np.asarray(y)
        if y.ndim == 2:
            y = y[None]
        if y.shape[1:] != self.shape[1:] or self._written + y.shape[0] > self.shape[0]:
            raise ValueError(f"measurement block {y.shape} does not fit {self.shape}")
        if y.size:
            lo, hi = y.min(), y.max()
            self._lo = lo if self._lo is None else min(self._lo, lo)
            self._hi = hi if self._hi is None else max(self._hi, hi)
        data = np.ascontiguousarray(y, dtype=self.stream_dtype.newbyteorder("<"))
        buf = memoryview(data).cast("B")
        self._sha.update(buf)
        self._f.write(buf)
        self._written += y.shape[0]

    @property
    def value_range(self) -> tuple:
        """(min, max) of the measurements written so far."""
        return (self._lo, self._hi)

    def finish(self, meta: dict, counts: np.ndarray, packed_mask: np.ndarray | None = None) -> dict:
        """Write counts, mask and metadata; returns the completed metadata."""
        if self._written != self.shape[0]:
            raise RuntimeError(f"wrote {self._written} measurements, expected {self.shape[0]}")
        self._f.close()
        dtype, sha = self.stream_dtype, self._sha.hexdigest()
        lo = 0 if self._lo is None else self._lo
        hi = 0 if self._hi is None else self._hi
        meta = dict(meta)
        if self.quantize:
            if int(lo) < 0:
                raise EmcsError(f"--quantize needs non-negative counts; the sums reach {int(lo)}")
            meta["measurement_quantization"] = {
                "kind": "anscombe", "step": self.quantize, "counts_dtype": dtype.name,
                "counts_range": [int(lo), int(hi)],
            }
            lo, hi = (int(c) for c in anscombe_codes(np.array([lo, hi]), self.quantize))
            dtype = smallest_int_dtype(lo, hi)
        elif self.narrow:
            tight = smallest_int_dtype(int(lo), int(hi))
            if tight.itemsize < dtype.itemsize:
                dtype = tight
        codec = packed_codec(self.pack, dtype)
        if dtype != self.stream_dtype or codec:
            self._zf.close()
            sums = None
            if codec == "mask-predictive":
                sums = MaskSums(meta["mask"], packed_mask, int(meta["B"]), self.shape[1:], counts)
            sha = self._rewrite(dtype, codec, sums)
            self._zf = zipfile.ZipFile(self.path, "a", zipfile.ZIP_STORED, allowZip64=True)
        if codec:
            meta["format_version"] = (PREDICTIVE_VERSION if codec == "mask-predictive" else
                                      QUANTIZED_VERSION if self.quantize else PACKED_VERSION)
            meta["measurement_codec"] = codec
        meta["measurement_dtype"] = dtype.name
        meta["measurement_sha256"] = sha
        if dtype.kind in "iu":
            meta["measurement_range"] = [int(lo), int(hi)]
        else:
            meta["measurement_range"] = [float(lo), float(hi)]
        _write_member(self._zf, COUNTS_MEMBER, np.asarray(counts, dtype=np.int64))
        if packed_mask is not None:
            _write_member(self._zf, MASK_MEMBER, np.asarray(packed_mask, dtype=np.uint8))
        _write_member(self._zf, META_MEMBER, _json_array(meta))
        self._zf.close()
        return meta

    def _rewrite(self, dtype: np.dtype, codec: str | None = None, sums=None) -> str:
        """Copy the measurements into a fresh archive in ``dtype`` (quantized if asked, coded
        one per member with ``codec`` if given; ``sums`` (:class:`MaskSums`) gives the mask
        sums the mask-predictive codec needs); return the sha256 of the stored little-endian bytes."""
        tmp = self.path + ".narrow"
        sha = hashlib.sha256()
        n, H, W = self.shape
        per = 1 if codec else max(1, _CHUNK_BYTES // max(1, H * W * self.stream_dtype.itemsize))
        try:
            with zipfile.ZipFile(self.path) as src, zipfile.ZipFile(
                tmp, "w", zipfile.ZIP_STORED, allowZip64=True
            ) as dst, src.open(MEAS_MEMBER) as fin:
                np.lib.format.read_magic(fin)
                np.lib.format.read_array_header_1_0(fin)
                fout = None
                if not codec:
                    fout = dst.open(MEAS_MEMBER, "w", force_zip64=True)
                    np.lib.format.write_array_header_1_0(fout, _npy_header(dtype, self.shape))
                for start in range(0, n, per):
                    m = min(per, n - start)
                    raw = fin.read(m * H * W * self.stream_dtype.itemsize)
                    block = np.frombuffer(raw, self.stream_dtype.newbyteorder("<"))
                    if self.quantize:
                        block = anscombe_codes(block, self.quantize)
                    block = block.astype(dtype.newbyteorder("<"))
                    buf = memoryview(block).cast("B")
                    sha.update(buf)
                    if fout is not None:
                        fout.write(buf)
                    else:
                        S = sums(start) if sums is not None else None
                        dst.writestr(packed_member(start, codec),
                                     encode_measurement(block.reshape(H, W), codec, S, self.quantize))
                if fout is not None:
                    fout.close()
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return sha.hexdigest()

    def abort(self) -> None:
        """Close handles after an error (the caller removes the temporary file)."""
        for h in (self._f, self._zf):
            try:
                h.close()
            except Exception:
                pass


# ----------------------------------------------------------------------------- reading
@dataclass
class Container:
    """A loaded measurement container (see :func:`load_container`).

    Attributes
    ----------
    path : str
    measurements : ndarray or PackedMeasurements
        (N, H, W), memory-mapped (read-only) when the member is stored uncompressed,
        decoded on access when packed.
    counts : ndarray
        (N,) int64, frames in each group.
    B : int
        Frames per full group (= number of masks).
    input_dtype : numpy.dtype
    input_shape : tuple of int
        (T, H, W) of the encoded movie.
    value_range : tuple of float
        (min, max) of the input pixels.
    pixel_size : float or None
        Å per pixel.
    meta : dict
        All metadata (the JSON member).
    """

    path: str
    measurements: np.ndarray | PackedMeasurements
    counts: np.ndarray
    B: int
    input_dtype: np.dtype
    input_shape: tuple[int, int, int]
    value_range: tuple[float, float]
    pixel_size: float | None
    meta: dict
    _packed_mask: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_measurements(self) -> int:
        return int(self.measurements.shape[0])

    @property
    def frame_shape(self) -> tuple[int, int]:
        return int(self.measurements.shape[1]), int(self.measurements.shape[2])

    @property
    def format_version(self) -> int:
        return int(self.meta["format_version"])

    @property
    def mask_kind(self) -> str:
        return self.meta["mask"]["kind"]

    @property
    def seed(self) -> int | None:
        return self.meta["mask"].get("seed")

    @property
    def density(self) -> float:
        """Fraction of open mask pixels (requested for generated masks, measured for explicit)."""
        return float(self.meta["mask"]["density"])

    @property
    def file_bytes(self) -> int:
        return os.path.getsize(self.path)

    @property
    def input_bytes(self) -> int:
        return int(np.prod(self.input_shape)) * self.input_dtype.itemsize

    @property
    def ratio(self) -> float:
        """Honest compression ratio: input pixel bytes / container file bytes."""
        return self.input_bytes / self.file_bytes

    def group_frames(self, k: int) -> tuple[int, int]:
        """Frame range ``[start, stop)`` of the input encoded in measurement ``k``."""
        start = int(k) * self.B
        return start, start + int(self.counts[k])

    def masks(self, rows: tuple[int, int] | None = None, cols: tuple[int, int] | None = None) -> np.ndarray:
        """The (B, H, W) boolean masks (or a spatial tile of them).

        Group ``k`` with ``counts[k] < B`` frames used the first ``counts[k]`` masks.
        """
        B = self.B
        H, W = self.frame_shape
        m = self.meta["mask"]
        if m["kind"] == "generated":
            return make_masks(int(m["seed"]), B, H, W, float(m["density"]), rows=rows, cols=cols)
        full = unpack_masks(self._packed_mask, (B, H, W))
        r0, r1 = (0, H) if rows is None else rows
        c0, c1 = (0, W) if cols is None else cols
        return full[:, r0:r1, c0:c1]

    def summary(self) -> dict:
        """A JSON-ready description (what ``emcs info`` prints)."""
        m = self.meta["mask"]
        return {
            "path": self.path,
            "kind": "tcs-container",
            "format_version": self.format_version,
            "emcs_version": self.meta.get("emcs_version"),
            "input_shape": list(self.input_shape),
            "input_dtype": self.input_dtype.name,
            "value_range": list(self.value_range),
            "pixel_size": self.pixel_size,
            "B": self.B,
            "n_measurements": self.n_measurements,
            "counts_last": int(self.counts[-1]) if len(self.counts) else 0,
            "measurement_dtype": self.measurements.dtype.name,
            "measurement_codec": self.meta.get("measurement_codec", "none (memory-mappable)"),
            "measurement_quantization": self.meta.get("measurement_quantization"),
            "mask_kind": m["kind"],
            "mask_algorithm": m.get("algorithm"),
            "seed": m.get("seed"),
            "density": float(m["density"]),
            "file_bytes": self.file_bytes,
            "input_bytes": self.input_bytes,
            "ratio": self.ratio,
            "source": self.meta["input"].get("name"),
        }


def _read_small_member(zf: zipfile.ZipFile, name: str, path: str) -> np.ndarray:
    try:
        with zf.open(name) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise EmcsError(
                f"member {name} holds pickled (object) data; emcs never unpickles files", path
            ) from exc
        raise EmcsError(f"member {name} is not a valid array ({exc})", path) from exc
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
        raise EmcsError(f"member {name} is corrupt or truncated ({exc})", path) from exc


def _open_measurements(zf: zipfile.ZipFile, path: str, mmap: bool) -> np.ndarray:
    info = zf.getinfo(MEAS_MEMBER)
    try:
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            header_len = f.tell() if f.seekable() else None
    except ValueError as exc:
        raise EmcsError(f"member {MEAS_MEMBER} has a bad array header ({exc})", path) from exc
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
        raise EmcsError(f"checksum mismatch: member {MEAS_MEMBER} is corrupt ({exc})", path) from exc
    if dtype.hasobject:
        raise EmcsError(
            f"member {MEAS_MEMBER} holds pickled (object) data; emcs never unpickles files", path
        )
    if len(shape) != 3 or fortran:
        raise EmcsError(f"measurements have shape {shape}; expected C-ordered (N, H, W)", path)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if mmap and info.compress_type == zipfile.ZIP_STORED and header_len is not None:
        with open(path, "rb") as fh:
            fh.seek(info.header_offset)
            local = fh.read(30)
        if len(local) == 30 and local[:4] == b"PK\x03\x04":
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            offset = info.header_offset + 30 + name_len + extra_len + header_len
            if offset + nbytes <= os.path.getsize(path) and info.file_size == header_len + nbytes:
                if nbytes == 0:
                    return np.zeros(shape, dtype)
                return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    return _read_small_member(zf, MEAS_MEMBER, path)


def _check_meta(meta: dict, path: str) -> None:
    if meta.get("format") != FORMAT_NAME:
        raise EmcsError(f"not an emcs measurement container (format {meta.get('format')!r})", path)
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise EmcsError("the container has no valid format_version", path)
    if version > FORMAT_VERSION:
        raise EmcsError(
            f"container format version {version} is newer than this emcs supports "
            f"({FORMAT_VERSION}); upgrade emcs",
            path,
        )
    codec = meta.get("measurement_codec")
    if codec is not None and codec not in CODECS:
        raise EmcsError(f"unknown measurement codec {codec!r} (this emcs knows {', '.join(CODECS)}); "
                        "upgrade emcs", path)
    if codec is not None and version < PACKED_VERSION:
        raise EmcsError(f"a format version {version} container cannot have packed measurements", path)
    if codec == "mask-predictive" and version < PREDICTIVE_VERSION:
        raise EmcsError(f"a format version {version} container cannot have mask-predictive measurements", path)
    quant = meta.get("measurement_quantization")
    if quant is not None:
        if not isinstance(quant, dict) or quant.get("kind") not in QUANTIZATIONS:
            kind = quant.get("kind") if isinstance(quant, dict) else quant
            raise EmcsError(f"unknown measurement quantization {kind!r} (this emcs knows "
                            f"{', '.join(QUANTIZATIONS)}); upgrade emcs", path)
        step = quant.get("step")
        if not isinstance(step, (int, float)) or not 0 < step <= 4:
            raise EmcsError(f"the measurement quantization step {step!r} is invalid", path)
        if codec is None or version < QUANTIZED_VERSION:
            raise EmcsError("quantized measurements need a packed format version 3 container", path)
    missing = [k for k in _REQUIRED if k not in meta]
    missing += [f"input.{k}" for k in _REQUIRED_INPUT if k not in meta.get("input", {})]
    if missing:
        raise EmcsError("the container metadata lacks: " + ", ".join(missing), path)
    for key, typ in _REQUIRED.items():
        if not isinstance(meta[key], typ):
            raise EmcsError(f"the container metadata field {key!r} has the wrong type", path)
    m = meta["mask"]
    kind = m.get("kind")
    if kind == "generated":
        for key in ("algorithm", "seed", "density"):
            if key not in m:
                raise EmcsError(f"the container metadata lacks mask.{key}", path)
        if m["algorithm"] not in KNOWN_MASK_ALGORITHMS:
            raise EmcsError(
                f"unknown mask algorithm {m['algorithm']!r} (this emcs knows "
                + ", ".join(KNOWN_MASK_ALGORITHMS)
                + "); upgrade emcs",
                path,
            )
    elif kind == "explicit":
        if "density" not in m:
            raise EmcsError("the container metadata lacks mask.density", path)
    else:
        raise EmcsError(f"unknown mask kind {kind!r}", path)


def load_container(path: str | os.PathLike, verify: bool = True, mmap: bool = True) -> Container:
    """Open and validate a measurement container.

    Parameters
    ----------
    path : str or PathLike
        The ``.npz`` file written by ``emcs encode``.
    verify : bool
        Check the sha256 of the measurement bytes (reads them once, in chunks).
    mmap : bool
        Memory-map the measurements (read-only) instead of loading them.

    Returns
    -------
    Container

    Raises
    ------
    EmcsError
        Missing/corrupt/truncated file, not a container, newer format version,
        missing fields, pickled members, inconsistent shapes, bad checksum.

    Examples
    --------
    >>> c = load_container("movie.npz")                      # doctest: +SKIP
    >>> c.measurements.shape, c.counts, c.B, c.masks().shape  # doctest: +SKIP
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise EmcsError("no such file", path)
    if os.path.isdir(path):
        raise EmcsError("is a folder, not a measurement container", path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise EmcsError(f"not a valid measurement container (corrupt or truncated archive: {exc})", path) from exc
    with zf:
        names = set(zf.namelist())
        for member in (META_MEMBER, COUNTS_MEMBER):
            if member not in names:
                raise EmcsError(f"not an emcs measurement container (no {member} member)", path)
        raw = _read_small_member(zf, META_MEMBER, path)
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise EmcsError(f"member {META_MEMBER} is not a JSON byte array", path)
        try:
            meta = json.loads(raw.tobytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EmcsError(f"the container metadata is not valid JSON ({exc})", path) from exc
        if not isinstance(meta, dict):
            raise EmcsError("the container metadata is not a JSON object", path)
        _check_meta(meta, path)
        counts = _read_small_member(zf, COUNTS_MEMBER, path)
        packed = None
        if meta["mask"]["kind"] == "explicit":
            if MASK_MEMBER not in names:
                raise EmcsError(f"the explicit mask member {MASK_MEMBER} is missing", path)
            packed = _read_small_member(zf, MASK_MEMBER, path)
        codec = meta.get("measurement_codec")
        if codec is None:
            if MEAS_MEMBER not in names:
                raise EmcsError(f"not an emcs measurement container (no {MEAS_MEMBER} member)", path)
            y = _open_measurements(zf, path, mmap)
        else:
            N, (H, W) = meta["n_measurements"], meta["frame_shape"]
            absent = [k for k in range(N) if packed_member(k, codec) not in names]
            if absent:
                raise EmcsError(f"{len(absent)} of {N} packed measurements are missing "
                                f"(first: {packed_member(absent[0], codec)})", path)
            try:
                dt = np.dtype(meta["measurement_dtype"])
            except TypeError as exc:
                raise EmcsError(f"bad measurement dtype {meta['measurement_dtype']!r}", path) from exc
            quant = meta.get("measurement_quantization")
            # lazy: the counts and the packed mask are checked below, before any sum is made
            sums = MaskSums(meta["mask"], packed, meta["B"], (H, W), counts) if codec == "mask-predictive" else None
            y = PackedMeasurements(path, codec, dt, (N, H, W), float(quant["step"]) if quant else None, sums)

    B = meta["B"]
    H, W = (int(s) for s in meta["frame_shape"])
    inp = meta["input"]
    try:
        input_shape = tuple(int(s) for s in inp["shape"])
        input_dtype = np.dtype(inp["dtype"])
        lo, hi = (float(v) for v in inp["value_range"])
        pixel_size = None if inp["pixel_size"] is None else float(inp["pixel_size"])
    except (TypeError, ValueError) as exc:
        raise EmcsError(f"the container's input description is invalid ({exc})", path) from exc
    N = meta["n_measurements"]
    problems = []
    if y.shape != (N, H, W):
        problems.append(f"measurements have shape {y.shape}, metadata says {(N, H, W)}")
    stored = getattr(y, "stored_dtype", y.dtype)
    if stored.name != meta["measurement_dtype"]:
        problems.append(f"measurements are {stored}, metadata says {meta['measurement_dtype']}")
    if counts.shape != (N,) or counts.dtype.kind not in "iu":
        problems.append(f"counts have shape {counts.shape}, expected ({N},)")
    elif N and (counts.min() < 1 or counts.max() > B or int(counts.sum()) != input_shape[0]):
        problems.append("per-group frame counts do not add up to the input frame count")
    if len(input_shape) != 3 or input_shape[1:] != (H, W):
        problems.append(f"input shape {input_shape} does not match frames {(H, W)}")
    if B < 1 or N != -(-input_shape[0] // B):
        problems.append(f"{N} measurements do not cover {input_shape[0]} frames at B={B}")
    if packed is not None and packed.size * 8 < B * H * W:
        problems.append("the packed mask is too small for (B, H, W)")
    if problems:
        raise EmcsError("inconsistent container: " + "; ".join(problems), path)
    if verify:
        sha = hashlib.sha256()
        if isinstance(y, PackedMeasurements):
            for block in y.stored():  # decodes every member once
                sha.update(memoryview(np.ascontiguousarray(block, stored.newbyteorder("<"))).cast("B"))
        else:
            flat = y.reshape(-1)
            step = max(1, _CHUNK_BYTES // y.dtype.itemsize)
            for start in range(0, flat.size, step):
                block = np.ascontiguousarray(flat[start : start + step], dtype=y.dtype.newbyteorder("<"))
                sha.update(memoryview(block).cast("B"))
        if sha.hexdigest() != meta["measurement_sha256"]:
            raise EmcsError("checksum mismatch: the measurements are corrupt or were modified", path)
    return Container(
        path=path,
        measurements=y,
        counts=counts.astype(np.int64),
        B=int(B),
        input_dtype=input_dtype,
        input_shape=input_shape,  # type: ignore[arg-type]
        value_range=(lo, hi),
        pixel_size=pixel_size,
        meta=meta,
        _packed_mask=packed,
    )


def base_meta(
    *,
    B: int,
    n: int,
    frame_shape: tuple[int, int],
    mask: dict,
    input_info: dict,
    encoder: dict | None = None,
) -> dict:
    """Metadata skeleton for :meth:`ContainerWriter.finish` (checksum/dtype are added there)."""
    from emcs import __version__

    return {
        "format": FORMAT_NAME,
        "format_version": UNPACKED_VERSION,  # finish() raises it when the measurements are packed
        "emcs_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "B": int(B),
        "n_measurements": int(n),
        "frame_shape": [int(frame_shape[0]), int(frame_shape[1])],
        "last_group_masks": "first-n",
        "mask": mask,
        "input": input_info,
        "encoder": encoder or {},
    }


__all__ = [
    "CODECS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "PACK_CHOICES",
    "QUANTIZATIONS",
    "anscombe_codes",
    "anscombe_values",
    "check_pack",
    "check_quantize",
    "group_mask_sum",
    "MaskSums",
    "packed_codec",
    "Container",
    "ContainerWriter",
    "PackedMeasurements",
    "base_meta",
    "load_container",
    "pack_masks",
    "smallest_int_dtype",
]

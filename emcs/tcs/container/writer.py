"""Write a container while its measurements are produced (:class:`ContainerWriter`)."""

from __future__ import annotations

import hashlib
import os
import zipfile

import numpy as np

from emcs.errors import EmcsError
from emcs.tcs.container.codecs import (
    anscombe_codes,
    check_packing,
    encode_measurement,
    packed_codec,
)
from emcs.tcs.container.members import json_array, npy_header, write_member
from emcs.tcs.container.schema import (
    COUNTS_MEMBER,
    MASK_MEMBER,
    MEAS_MEMBER,
    META_MEMBER,
    PACKED_VERSION,
    PREDICTIVE_VERSION,
    QUANTIZED_VERSION,
    packed_member,
)
from emcs.tcs.operator import smallest_int_dtype

#: bytes of measurements copied at once when the member is rewritten
_CHUNK_BYTES = 1 << 24


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
    pack : {"none", "predictive", "jpegxl", "zstd"}, optional
        Code the finished measurements losslessly, one member each (format
        version 2; 4 for ``predictive``, which divides the known masks out
        before predicting, :mod:`emcs.tcs.container.predictive`); ``jpegxl`` falls back
        to zstd for dtypes other than uint8/uint16, ``predictive`` for float sums.
        None: ``predictive`` with ``quantize``, else ``none``.
    quantize : float, optional
        Anscombe step (:func:`~emcs.tcs.container.codecs.anscombe_codes`): store
        quantization codes of the (non-negative integer) sums instead of the sums
        (format version 3; needs ``pack``). The checksum covers the codes.
    source : str, optional
        The input file, named in errors about the data (floating-point or
        negative counts to quantize).

    Raises
    ------
    EmcsError
        A bad ``pack`` or ``quantize`` (:func:`~emcs.tcs.container.codecs.check_packing`).
    """

    def __init__(self, path: str, n: int, H: int, W: int, stream_dtype, narrow: bool = True,
                 pack: str | None = "none", quantize: float | None = None, source: str | None = None):
        self.pack, self.quantize = check_packing(pack, quantize, stream_dtype, source)
        self.source = source
        self.path = os.fspath(path)
        self.shape = (int(n), int(H), int(W))
        self.stream_dtype = np.dtype(stream_dtype)
        self.narrow = narrow and self.stream_dtype.kind in "iu"
        self._zf = zipfile.ZipFile(self.path, "w", zipfile.ZIP_STORED, allowZip64=True)
        self._f = self._zf.open(MEAS_MEMBER, "w", force_zip64=True)
        np.lib.format.write_array_header_1_0(self._f, npy_header(self.stream_dtype, self.shape))
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

    def finish(self, meta: dict, counts: np.ndarray, operator=None) -> dict:
        """Write counts, mask and metadata; returns the completed metadata.

        ``operator`` (:class:`emcs.tcs.operator.TcsOperator`) holds the masks:
        an explicit mask is stored bit-packed, and the mask-predictive codec
        takes its open counts per group size.
        """
        if self._written != self.shape[0]:
            raise RuntimeError(f"wrote {self._written} measurements, expected {self.shape[0]}")
        self._f.close()
        dtype, sha = self.stream_dtype, self._sha.hexdigest()
        lo = 0 if self._lo is None else self._lo
        hi = 0 if self._hi is None else self._hi
        meta = dict(meta)
        if self.quantize:
            if int(lo) < 0:
                raise EmcsError(f"quantize needs non-negative counts; the sums reach {int(lo)}",
                                self.source, param="quantize")
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
                sums = [operator.open_count(int(n)) for n in counts]
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
        write_member(self._zf, COUNTS_MEMBER, np.asarray(counts, dtype=np.int64))
        if operator is not None and operator.kind == "explicit":
            write_member(self._zf, MASK_MEMBER, np.asarray(operator.packed, dtype=np.uint8))
        write_member(self._zf, META_MEMBER, json_array(meta))
        self._zf.close()
        return meta

    def _rewrite(self, dtype: np.dtype, codec: str | None = None, sums=None) -> str:
        """Copy the measurements into a fresh archive in ``dtype`` (quantized if asked, coded
        one per member with ``codec`` if given; ``sums[k]`` is the mask sum of measurement k
        the mask-predictive codec needs); return the sha256 of the stored little-endian bytes."""
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
                    np.lib.format.write_array_header_1_0(fout, npy_header(dtype, self.shape))
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
                        S = sums[start] if sums is not None else None
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

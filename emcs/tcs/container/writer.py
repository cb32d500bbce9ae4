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
from emcs.tcs.container.members import json_array, npy_header, write_member, zip_info
from emcs.tcs.container.schema import (
    CHECKSUM_CRC32,
    COUNTS_MEMBER,
    MASK_MEMBER,
    MEAS_MEMBER,
    MEMBERS_VERSION,
    META_MEMBER,
    PACKED_VERSION,
    PREDICTIVE_VERSION,
    QUANTIZED_VERSION,
    created_time,
    packed_member,
)
from emcs.tcs.operator import smallest_int_dtype


class ContainerWriter:
    """Write a container while its measurements are produced (bounded memory).

    Each measurement is written once, as it comes (format version 5), unless
    ``pack`` is ``jpegxl`` or ``zstd``:

    - integer sums with ``narrow`` and no ``pack``: one ``.npy`` member per
      measurement, each in the smallest integer dtype holding its own values
      (codec ``"npy"``);
    - ``pack="predictive"`` on integer sums (quantized or not): one
      mask-predictive member per measurement, coded at once;
    - otherwise without ``pack`` (float sums, ``narrow=False``): the single
      memory-mappable ``measurements.npy`` in ``stream_dtype``.

    The integrity check of version 5 is the zip CRC-32 of each member (computed
    once while writing; there is no ``measurement_sha256``). ``jpegxl`` and
    ``zstd`` (versions 2 and 3, whose members need one dtype for all
    measurements) stream the measurements into ``measurements.npy`` and
    rewrite them coded in :meth:`finish`, with a sha256 as before.

    Parameters
    ----------
    path : str
        Final file; the caller provides a temporary path (see ``emcs.io.atomic_output``).
    n, H, W : int
        Number of measurements and frame size.
    stream_dtype : numpy dtype
        Dtype the measurements are produced in (the worst case for the input).
    narrow : bool
        Store integer sums in the smallest integer dtype holding the actual values.
    pack : {"none", "predictive", "jpegxl", "zstd"}, optional
        Code the measurements losslessly, one member each
        (:mod:`emcs.tcs.container.codecs`); ``jpegxl`` falls back to zstd for
        dtypes other than uint8/uint16, ``predictive`` for float sums.
        None: ``predictive`` with ``quantize``, else ``none``.
    quantize : float, optional
        Anscombe step (:func:`~emcs.tcs.container.codecs.anscombe_codes`): store
        quantization codes of the (non-negative integer) sums instead of the sums
        (needs ``pack``).
    source : str, optional
        The input file, named in errors about the data (floating-point or
        negative counts to quantize).
    operator : TcsOperator, optional
        The masks (:class:`emcs.tcs.operator.TcsOperator`): the mask-predictive
        codec needs their open counts while writing. Without it, ``predictive``
        is coded in :meth:`finish` (with the operator given there) as format
        version 4, as before version 5.

    Raises
    ------
    EmcsError
        A bad ``pack`` or ``quantize`` (:func:`~emcs.tcs.container.codecs.check_packing`).
    """

    def __init__(self, path: str, n: int, H: int, W: int, stream_dtype, narrow: bool = True,
                 pack: str | None = "none", quantize: float | None = None, source: str | None = None,
                 operator=None):
        self.pack, self.quantize = check_packing(pack, quantize, stream_dtype, source)
        created_time()  # a bad SOURCE_DATE_EPOCH stops here, before any work
        self.source = source
        self.path = os.fspath(path)
        self.shape = (int(n), int(H), int(W))
        self.stream_dtype = np.dtype(stream_dtype)
        self.narrow = narrow and self.stream_dtype.kind in "iu"
        self.operator = operator
        integer = self.stream_dtype.kind in "iu"
        if self.pack == "predictive" and integer and operator is not None:
            self.codec = "mask-predictive"
        elif self.pack == "none" and self.narrow:
            self.codec = "npy"
        else:
            self.codec = None
        #: True: measurements.npy is rewritten coded in finish() (jpegxl, zstd)
        self.rewrite = self.pack != "none" and self.codec is None
        self._zf = zipfile.ZipFile(self.path, "w", zipfile.ZIP_STORED, allowZip64=True)
        self._f = None
        if self.codec is None:
            self._f = self._zf.open(zip_info(MEAS_MEMBER), "w", force_zip64=True)
            np.lib.format.write_array_header_1_0(self._f, npy_header(self.stream_dtype, self.shape))
        self._sha = hashlib.sha256() if self.rewrite else None
        self._written = 0
        self._lo = None
        self._hi = None
        self._code_lo = None
        self._code_hi = None

    def write(self, y: np.ndarray, value_range: tuple | None = None, frames: int | None = None) -> None:
        """Append measurements of shape (m, H, W) (or one (H, W) measurement).

        ``value_range`` (min, max) of ``y``, when the caller knows it, saves a
        pass; ``frames`` is the number of frames summed in each measurement
        (default B; the mask-predictive codec needs it for a short last group).
        """
        y = np.asarray(y)
        if y.ndim == 2:
            y = y[None]
        if y.shape[1:] != self.shape[1:] or self._written + y.shape[0] > self.shape[0]:
            raise ValueError(f"measurement block {y.shape} does not fit {self.shape}")
        if not y.size:
            return
        lo, hi = (y.min(), y.max()) if value_range is None else value_range
        self._lo = lo if self._lo is None else min(self._lo, lo)
        self._hi = hi if self._hi is None else max(self._hi, hi)
        if self._f is not None:
            data = np.ascontiguousarray(y, dtype=self.stream_dtype.newbyteorder("<"))
            buf = memoryview(data).cast("B")
            if self._sha is not None:
                self._sha.update(buf)
            self._f.write(buf)
        else:
            for i in range(y.shape[0]):
                self._write_member(y[i], (lo, hi) if y.shape[0] == 1 else (y[i].min(), y[i].max()),
                                   frames)
        self._written += y.shape[0]

    def _write_member(self, y: np.ndarray, value_range: tuple, frames: int | None) -> None:
        """Code measurement ``self._written`` (+ offset) at once into its own member."""
        k = self._written
        lo, hi = int(value_range[0]), int(value_range[1])
        if self.quantize:
            if lo < 0:
                raise EmcsError(f"quantize needs non-negative counts; the sums reach {lo}",
                                self.source, param="quantize")
            y = anscombe_codes(y, self.quantize)
            lo, hi = (int(c) for c in anscombe_codes(np.array([lo, hi]), self.quantize))
            self._code_lo = lo if self._code_lo is None else min(self._code_lo, lo)
            self._code_hi = hi if self._code_hi is None else max(self._code_hi, hi)
        name = packed_member(k, self.codec)
        if self.codec == "npy":
            dtype = smallest_int_dtype(lo, hi)
            with self._zf.open(zip_info(name), "w", force_zip64=True) as f:
                np.lib.format.write_array_header_1_0(f, npy_header(dtype, y.shape))
                f.write(memoryview(np.ascontiguousarray(y, dtype.newbyteorder("<"))).cast("B"))
        else:
            n = self.operator.B if frames is None else int(frames)
            self._zf.writestr(zip_info(name), encode_measurement(y, self.codec,
                                                                 self.operator.open_count(n), self.quantize))

    @property
    def value_range(self) -> tuple:
        """(min, max) of the measurements written so far."""
        return (self._lo, self._hi)

    def finish(self, meta: dict, counts: np.ndarray, operator=None) -> dict:
        """Write counts, mask and metadata; returns the completed metadata.

        ``operator`` (:class:`emcs.tcs.operator.TcsOperator`; default the one
        given to the constructor) holds the masks: an explicit mask is stored
        bit-packed, and the mask-predictive codec takes its open counts per group size.
        """
        operator = self.operator if operator is None else operator
        if self._written != self.shape[0]:
            raise RuntimeError(f"wrote {self._written} measurements, expected {self.shape[0]}")
        if self._f is not None:
            self._f.close()
        dtype = self.stream_dtype
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
        if self.rewrite:
            codec = packed_codec(self.pack, dtype)
            self._zf.close()
            sums = [operator.open_count(int(n)) for n in counts] if codec == "mask-predictive" else None
            sha = self._rewrite(dtype, codec, sums)
            self._zf = zipfile.ZipFile(self.path, "a", zipfile.ZIP_STORED, allowZip64=True)
            meta["format_version"] = (PREDICTIVE_VERSION if codec == "mask-predictive" else
                                      QUANTIZED_VERSION if self.quantize else PACKED_VERSION)
            meta["measurement_codec"] = codec
            meta["measurement_sha256"] = sha
        else:
            meta["format_version"] = MEMBERS_VERSION
            meta["measurement_checksum"] = CHECKSUM_CRC32
            if self.codec:
                meta["measurement_codec"] = self.codec
        meta["measurement_dtype"] = dtype.name
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

    def _rewrite(self, dtype: np.dtype, codec: str, sums: list | None = None) -> str:
        """Copy the measurements into a fresh archive in ``dtype``, quantized if asked and coded
        one per member with ``codec`` (``sums[k]``: the mask sum of measurement k the
        mask-predictive codec needs); return the sha256 of the stored little-endian bytes."""
        tmp = self.path + ".narrow"
        sha = hashlib.sha256()
        n, H, W = self.shape
        try:
            with zipfile.ZipFile(self.path) as src, zipfile.ZipFile(
                tmp, "w", zipfile.ZIP_STORED, allowZip64=True
            ) as dst, src.open(MEAS_MEMBER) as fin:
                np.lib.format.read_magic(fin)
                np.lib.format.read_array_header_1_0(fin)
                for k in range(n):
                    raw = fin.read(H * W * self.stream_dtype.itemsize)
                    block = np.frombuffer(raw, self.stream_dtype.newbyteorder("<"))
                    if self.quantize:
                        block = anscombe_codes(block, self.quantize)
                    block = block.astype(dtype.newbyteorder("<"))
                    sha.update(memoryview(block).cast("B"))
                    dst.writestr(zip_info(packed_member(k, codec)),
                                 encode_measurement(block.reshape(H, W), codec,
                                                    None if sums is None else sums[k], self.quantize))
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return sha.hexdigest()

    def abort(self) -> None:
        """Close handles after an error (the caller removes the temporary file)."""
        for h in (self._f, self._zf):
            try:
                if h is not None:
                    h.close()
            except Exception:
                pass

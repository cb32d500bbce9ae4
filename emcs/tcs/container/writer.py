"""Write a container while its measurements are produced (:class:`ContainerWriter`)."""

from __future__ import annotations

import os
import zipfile

import numpy as np

from emcs.errors import EmcsError
from emcs.tcs.container.codecs import (
    anscombe_codes,
    check_packing,
    encode_measurement,
    member_codec,
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
    created_time,
    packed_member,
)
from emcs.tcs.operator import smallest_int_dtype


class ContainerWriter:
    """Write a container while its measurements are produced (bounded memory).

    Every measurement is written once, as it comes (format version 5), in a
    member of its own unless it goes to the single ``measurements.npy``:

    - no ``pack``, integer sums and ``narrow``: ``measurements/%08d.npy``, each
      in the smallest integer dtype holding its own values (codec ``"npy"``);
    - no ``pack`` otherwise (float sums, ``narrow=False``): all measurements in
      the one memory-mappable ``measurements.npy``, in ``stream_dtype``;
    - ``pack="predictive"`` on integer sums: a mask-predictive member each;
    - ``pack="jpegxl"``: lossless JPEG XL of each measurement in uint8 or uint16
      (the narrowest holding it), or for a measurement that needs more, zstd
      of its ``.npy`` (codec ``"zstd-npy"``); ``pack="zstd"`` (and
      ``predictive`` on float sums): ``zstd-npy`` members.

    The integrity check is the zip CRC-32 of each member, computed once while
    writing (no ``measurement_sha256``).

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
        (:mod:`emcs.tcs.container.codecs`). None: ``predictive`` with
        ``quantize``, else ``none``.
    quantize : float, optional
        Anscombe step (:func:`~emcs.tcs.container.codecs.anscombe_codes`): store
        quantization codes of the (non-negative integer) sums instead of the sums
        (needs ``pack``).
    source : str, optional
        The input file, named in errors about the data (floating-point or
        negative counts to quantize).
    operator : TcsOperator, optional
        The masks (:class:`emcs.tcs.operator.TcsOperator`): the mask-predictive
        codec needs their open counts while writing, and an explicit mask is stored.

    Raises
    ------
    EmcsError
        A bad ``pack`` or ``quantize`` (:func:`~emcs.tcs.container.codecs.check_packing`),
        or a bad ``SOURCE_DATE_EPOCH``.
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
        if self.pack == "none":
            self.codec = "npy" if self.narrow else None
        else:
            self.codec = packed_codec(self.pack, self.stream_dtype)
        if self.codec == "mask-predictive" and operator is None:
            raise ValueError("the mask-predictive codec needs the masks' operator")
        self._zf = zipfile.ZipFile(self.path, "w", zipfile.ZIP_STORED, allowZip64=True)
        self._f = None
        if self.codec is None:
            self._f = self._zf.open(zip_info(MEAS_MEMBER), "w", force_zip64=True)
            np.lib.format.write_array_header_1_0(self._f, npy_header(self.stream_dtype, self.shape))
        self._written = 0
        self._lo = None
        self._hi = None

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
        if self.quantize and int(lo) < 0:
            raise EmcsError(f"quantize needs non-negative counts; the sums reach {int(lo)}",
                            self.source, param="quantize")
        self._lo = lo if self._lo is None else min(self._lo, lo)
        self._hi = hi if self._hi is None else max(self._hi, hi)
        if self._f is not None:
            self._f.write(memoryview(np.ascontiguousarray(y, self.stream_dtype.newbyteorder("<"))).cast("B"))
        else:
            for i in range(y.shape[0]):
                one = (lo, hi) if y.shape[0] == 1 else (y[i].min(), y[i].max())
                self._write_member(self._written + i, y[i], one, frames)
        self._written += y.shape[0]

    def _write_member(self, k: int, y: np.ndarray, value_range: tuple, frames: int | None) -> None:
        """Code measurement ``k`` at once into its own member, in the narrowest dtype holding it."""
        lo, hi = value_range
        if self.quantize:
            y = anscombe_codes(y, self.quantize)
            lo, hi = anscombe_codes(np.array([lo, hi]), self.quantize)
        if y.dtype.kind == "f":
            dtype = self.stream_dtype
        else:
            dtype = smallest_int_dtype(int(lo), int(hi)) if self.narrow else self.stream_dtype
        y = np.ascontiguousarray(y, dtype.newbyteorder("<"))
        codec = member_codec(self.codec, dtype)
        if codec == "npy":
            with self._zf.open(zip_info(packed_member(k, codec)), "w", force_zip64=True) as f:
                np.lib.format.write_array_header_1_0(f, npy_header(dtype, y.shape))
                f.write(memoryview(y).cast("B"))
            return
        S = None
        if codec == "mask-predictive":
            S = self.operator.open_count(self.operator.B if frames is None else int(frames))
        self._zf.writestr(zip_info(packed_member(k, codec)), encode_measurement(y, codec, S, self.quantize))

    @property
    def value_range(self) -> tuple:
        """(min, max) of the measurements written so far."""
        return (self._lo, self._hi)

    def finish(self, meta: dict, counts: np.ndarray, operator=None) -> dict:
        """Write counts, mask and metadata; returns the completed metadata.

        ``operator`` (:class:`emcs.tcs.operator.TcsOperator`; default the one
        given to the constructor) holds the masks: an explicit mask is stored
        bit-packed.
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

    def abort(self) -> None:
        """Close handles after an error (the caller removes the temporary file)."""
        for h in (self._f, self._zf):
            try:
                if h is not None:
                    h.close()
            except Exception:
                pass

"""Read a container: :func:`open_container`, :func:`load_container` and :class:`Container`."""

from __future__ import annotations

import hashlib
import os
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from emcs.errors import EmcsError
from emcs.tcs.adaptive import group_sizes
from emcs.tcs.container.members import member_crc, open_measurements, read_meta, read_small_member
from emcs.tcs.container.packed import PackedMeasurements
from emcs.tcs.container.schema import (
    COUNTS_MEMBER,
    MASK_MEMBER,
    MEAS_MEMBER,
    META_MEMBER,
    member_choices,
    meta_problems,
    packed_member,
)
from emcs.tcs.operator import TcsOperator


@dataclass
class Container:
    """A measurement container (see :func:`open_container` and :func:`load_container`).

    Usable as a context manager: leaving the ``with`` block closes the archive
    and drops the memory map (``measurements`` is None afterwards).

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
    operator : TcsOperator
        The masks' forward model and mask sums (:class:`emcs.tcs.operator.TcsOperator`).
    verified : bool
        The checksum of the measurements was checked.
    """

    path: str
    measurements: np.ndarray | PackedMeasurements | None
    counts: np.ndarray
    B: int
    input_dtype: np.dtype
    input_shape: tuple[int, int, int]
    value_range: tuple[float, float]
    pixel_size: float | None
    meta: dict
    operator: TcsOperator = field(repr=False)
    verified: bool = False
    #: (CRC-32 of the .npy header, expected CRC-32 of the member) of a version-5 ``measurements.npy``
    member_crc: tuple[int, int] | None = field(default=None, repr=False)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the archive of packed measurements and drop the memory map."""
        if isinstance(self.measurements, PackedMeasurements):
            self.measurements.close()
        self.measurements = None

    @property
    def n_measurements(self) -> int:
        return int(self.meta["n_measurements"])

    @property
    def frame_shape(self) -> tuple[int, int]:
        H, W = self.meta["frame_shape"]
        return int(H), int(W)

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
        start = int(self.counts[:k].sum())
        return start, start + int(self.counts[k])

    def masks(self, rows: tuple[int, int] | None = None, cols: tuple[int, int] | None = None) -> np.ndarray:
        """The (B, H, W) boolean masks (or a spatial tile of them).

        Group ``k`` with ``counts[k] < B`` frames used the first ``counts[k]`` masks.
        """
        return self.operator.masks(rows=rows, cols=cols)

    def blocks(self, stops: Iterable[int]) -> Iterator[np.ndarray]:
        """Yield ``measurements[start:stop]`` for increasing ``stops`` (``start`` = the previous stop, 0 first).

        One pass: each packed member is decoded once. Unless the container was
        verified, the stored bytes are hashed on the way; after a pass over all
        N measurements a checksum mismatch raises :class:`EmcsError`.
        """
        y = self.measurements
        for stored in self._stored_blocks(stops):
            yield y.values(stored) if isinstance(y, PackedMeasurements) else stored

    def verify(self) -> None:
        """Check the sha256 of the measurements (reads them once, a measurement at a time)."""
        for _ in self._stored_blocks(range(1, self.n_measurements + 1)):
            pass

    def _stored_blocks(self, stops: Iterable[int]) -> Iterator[np.ndarray]:
        """The stored blocks; the checksum is checked on the way (zip CRC-32 of each packed member
        when read, or of ``measurements.npy`` here, or the sha256 of versions 1-4)."""
        y = self.measurements
        check = None if self.verified else _Checksum(self.meta, self.member_crc)
        start = 0
        for stop in stops:
            block = y.block(start, stop, stored=True) if isinstance(y, PackedMeasurements) else y[start:stop]
            if check is not None:
                check.update(block)
            yield block
            start = stop
        if check is not None and start == self.n_measurements:
            if not check.ok():
                raise EmcsError("checksum mismatch: the measurements are corrupt or were modified", self.path)
            self.verified = True

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
            "groups": group_sizes(self.counts) if len(self.counts) else None,
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


class _Checksum:
    """The running check of the stored measurements: their sha256 (format versions 1-4), the
    CRC-32 of a version-5 ``measurements.npy`` (``member_crc``), or nothing (version-5 packed
    members: :mod:`zipfile` checks each one's CRC-32 when it is read)."""

    def __init__(self, meta: dict, member_crc: tuple[int, int] | None):
        self.expected = meta.get("measurement_sha256")
        self.sha = hashlib.sha256() if self.expected else None
        self.crc, self.expected_crc = member_crc or (None, None)

    def update(self, block: np.ndarray) -> None:
        if self.sha is None and self.crc is None:
            return
        raw = memoryview(np.ascontiguousarray(block, block.dtype.newbyteorder("<"))).cast("B")
        if self.sha is not None:
            self.sha.update(raw)
        if self.crc is not None:
            self.crc = zlib.crc32(raw, self.crc)

    def ok(self) -> bool:
        if self.sha is not None and self.sha.hexdigest() != self.expected:
            return False
        return self.crc is None or self.crc == self.expected_crc


def open_archive(path: str) -> zipfile.ZipFile:
    """The container's zip archive; :class:`EmcsError` for a missing, folder or non-zip path."""
    if not os.path.exists(path):
        raise EmcsError("no such file", path)
    if os.path.isdir(path):
        raise EmcsError("is a folder, not a measurement container", path)
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise EmcsError(f"not a valid measurement container (corrupt or truncated archive: {exc})", path) from exc


def read_header(zf: zipfile.ZipFile, path: str) -> dict:
    """The checked metadata of an open container (:func:`~emcs.tcs.container.schema.meta_problems`)."""
    for member in (META_MEMBER, COUNTS_MEMBER):
        if member not in zf.NameToInfo:
            raise EmcsError(f"not an emcs measurement container (no {member} member)", path)
    meta = read_meta(zf, path)
    problems = meta_problems(meta)
    if problems:
        raise EmcsError(problems[0], path)
    return meta


def read_measurements(zf: zipfile.ZipFile, path: str, meta: dict, mmap: bool):
    """The measurements: a memory map (or array) of a plain member, or :class:`PackedMeasurements`
    (without the operator and counts the mask-predictive codec needs: set them once checked)."""
    codec = meta.get("measurement_codec")
    names = zf.NameToInfo
    if codec is None:
        if MEAS_MEMBER not in names:
            raise EmcsError(f"not an emcs measurement container (no {MEAS_MEMBER} member)", path)
        return open_measurements(zf, path, mmap)
    N, (H, W) = meta["n_measurements"], meta["frame_shape"]
    absent = [k for k in range(N) if not any(name in names for name, _ in member_choices(k, codec))]
    if absent:
        raise EmcsError(f"{len(absent)} of {N} packed measurements are missing "
                        f"(first: {packed_member(absent[0], codec)})", path)
    try:
        dt = np.dtype(meta["measurement_dtype"])
    except TypeError as exc:
        raise EmcsError(f"bad measurement dtype {meta['measurement_dtype']!r}", path) from exc
    quant = meta.get("measurement_quantization")
    return PackedMeasurements(path, codec, dt, (N, H, W), float(quant["step"]) if quant else None)


def input_description(meta: dict, path: str) -> tuple:
    """(input shape, input dtype, value range, pixel size) of the encoded movie."""
    inp = meta["input"]
    try:
        input_shape = tuple(int(s) for s in inp["shape"])
        input_dtype = np.dtype(inp["dtype"])
        lo, hi = (float(v) for v in inp["value_range"])
        pixel_size = None if inp["pixel_size"] is None else float(inp["pixel_size"])
    except (TypeError, ValueError) as exc:
        raise EmcsError(f"the container's input description is invalid ({exc})", path) from exc
    return input_shape, input_dtype, (lo, hi), pixel_size


def consistency_problems(meta: dict, y, counts: np.ndarray, packed_mask: np.ndarray | None,
                         input_shape: tuple) -> list[str]:
    """Disagreements between the metadata, the measurements, the counts and the mask."""
    B, N = meta["B"], meta["n_measurements"]
    H, W = (int(s) for s in meta["frame_shape"])
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
    if B < 1 or N < -(-input_shape[0] // B):
        problems.append(f"{N} measurements do not cover {input_shape[0]} frames at B={B}")
    if packed_mask is not None and packed_mask.size * 8 < B * H * W:
        problems.append("the packed mask is too small for (B, H, W)")
    return problems


def read_packed_mask(zf: zipfile.ZipFile, path: str, meta: dict) -> np.ndarray | None:
    """The bit-packed explicit mask (None for generated masks)."""
    if meta["mask"]["kind"] != "explicit":
        return None
    if MASK_MEMBER not in zf.NameToInfo:
        raise EmcsError(f"the explicit mask member {MASK_MEMBER} is missing", path)
    return read_small_member(zf, MASK_MEMBER, path)


def open_container(path: str | os.PathLike, mmap: bool = True) -> Container:
    """Open and validate a measurement container; the checksum is checked on the first full read.

    Use it in a ``with`` block (the archive of packed measurements stays open
    until the block ends). :meth:`Container.blocks` reads the measurements in
    one pass and checks their sha256 on the way; :meth:`Container.verify`
    checks it at once.

    Parameters
    ----------
    path : str or PathLike
        The ``.npz`` file written by ``emcs encode``.
    mmap : bool
        Memory-map plain measurements (read-only) instead of loading them.

    Raises
    ------
    EmcsError
        Missing/corrupt/truncated file, not a container, newer format version,
        missing fields, pickled members, inconsistent shapes.

    Examples
    --------
    >>> with open_container("movie.npz") as c:                        # doctest: +SKIP
    ...     for y in c.blocks(range(1, c.n_measurements + 1)):
    ...         print(y.shape)
    """
    path = os.fspath(path)
    with open_archive(path) as zf:
        meta = read_header(zf, path)
        counts = read_small_member(zf, COUNTS_MEMBER, path)
        packed = read_packed_mask(zf, path, meta)
        y = read_measurements(zf, path, meta, mmap)
        crc = None
        if "measurement_sha256" not in meta and "measurement_codec" not in meta:
            crc = member_crc(zf, MEAS_MEMBER, path)
    input_shape, input_dtype, value_range, pixel_size = input_description(meta, path)
    problems = consistency_problems(meta, y, counts, packed, input_shape)
    if problems:
        raise EmcsError("inconsistent container: " + "; ".join(problems), path)
    op = mask_operator(meta, packed, path)
    counts = counts.astype(np.int64)
    if isinstance(y, PackedMeasurements):
        y.operator, y.counts = op, counts
        y.open()
    return Container(path=path, measurements=y, counts=counts, B=int(meta["B"]), input_dtype=input_dtype,
                     input_shape=input_shape,  # type: ignore[arg-type]
                     value_range=value_range, pixel_size=pixel_size, meta=meta, operator=op,
                     member_crc=crc)


def mask_operator(meta: dict, packed_mask: np.ndarray | None, path: str) -> TcsOperator:
    """The :class:`~emcs.tcs.operator.TcsOperator` of the container's masks."""
    try:
        return TcsOperator.from_meta(meta["mask"], packed_mask, meta["B"], meta["frame_shape"])
    except (TypeError, ValueError) as exc:
        raise EmcsError(f"the container's mask description is invalid ({exc})", path) from exc


def load_container(path: str | os.PathLike, verify: bool = True, mmap: bool = True) -> Container:
    """Open and validate a measurement container, checking its checksum at once.

    Parameters
    ----------
    path : str or PathLike
        The ``.npz`` file written by ``emcs encode``.
    verify : bool
        Check the sha256 of the measurements (reads them once; packed members are decoded).
    mmap : bool
        Memory-map the measurements (read-only) instead of loading them.

    Returns
    -------
    Container
        Packed measurements open their archive per access (picklable).

    Raises
    ------
    EmcsError
        As :func:`open_container`, and a bad checksum.

    Examples
    --------
    >>> c = load_container("movie.npz")                      # doctest: +SKIP
    >>> c.measurements.shape, c.counts, c.B, c.masks().shape  # doctest: +SKIP
    """
    c = open_container(path, mmap)
    try:
        if verify:
            c.verify()  # with the archive open for the whole pass
    finally:
        if isinstance(c.measurements, PackedMeasurements):
            c.measurements.close()
    return c

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
FORMAT_VERSION = 1
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
    """

    def __init__(self, path: str, n: int, H: int, W: int, stream_dtype, narrow: bool = True):
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
        if self.narrow:
            tight = smallest_int_dtype(int(lo), int(hi))
            if tight.itemsize < dtype.itemsize:
                self._zf.close()
                sha = self._rewrite(tight)
                dtype = tight
                self._zf = zipfile.ZipFile(self.path, "a", zipfile.ZIP_STORED, allowZip64=True)
        meta = dict(meta)
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

    def _rewrite(self, dtype: np.dtype) -> str:
        """Copy the measurement member into a fresh archive in ``dtype``; return its sha256."""
        tmp = self.path + ".narrow"
        sha = hashlib.sha256()
        n, H, W = self.shape
        per = max(1, _CHUNK_BYTES // max(1, H * W * self.stream_dtype.itemsize))
        try:
            with zipfile.ZipFile(self.path) as src, zipfile.ZipFile(
                tmp, "w", zipfile.ZIP_STORED, allowZip64=True
            ) as dst, src.open(MEAS_MEMBER) as fin, dst.open(MEAS_MEMBER, "w", force_zip64=True) as fout:
                np.lib.format.read_magic(fin)
                np.lib.format.read_array_header_1_0(fin)
                np.lib.format.write_array_header_1_0(fout, _npy_header(dtype, self.shape))
                for start in range(0, n, per):
                    m = min(per, n - start)
                    raw = fin.read(m * H * W * self.stream_dtype.itemsize)
                    block = np.frombuffer(raw, self.stream_dtype.newbyteorder("<")).astype(
                        dtype.newbyteorder("<")
                    )
                    buf = memoryview(block).cast("B")
                    sha.update(buf)
                    fout.write(buf)
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
    measurements : ndarray
        (N, H, W), memory-mapped (read-only) when the member is stored uncompressed.
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
    measurements: np.ndarray
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
        for member in (META_MEMBER, MEAS_MEMBER, COUNTS_MEMBER):
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
        y = _open_measurements(zf, path, mmap)

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
    if y.dtype.name != meta["measurement_dtype"]:
        problems.append(f"measurements are {y.dtype}, metadata says {meta['measurement_dtype']}")
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
        "format_version": FORMAT_VERSION,
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
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "Container",
    "ContainerWriter",
    "base_meta",
    "load_container",
    "pack_masks",
    "smallest_int_dtype",
]

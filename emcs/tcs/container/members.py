"""Zip plumbing of the container: ``.npy`` members written and read without pickle."""

from __future__ import annotations

import json
import os
import struct
import time
import zipfile
import zlib

import numpy as np

from emcs.errors import EmcsError
from emcs.tcs.container.schema import MEAS_MEMBER, META_MEMBER, created_time

#: errors of a damaged archive member (the zip CRC, a truncated stream ...)
DAMAGE = (zipfile.BadZipFile, EOFError, OSError, zlib.error)


def json_array(obj: dict) -> np.ndarray:
    """``obj`` as UTF-8 JSON bytes (keys sorted) in a uint8 array: the ``meta.npy`` member."""
    return np.frombuffer(json.dumps(obj, sort_keys=True).encode("utf-8"), dtype=np.uint8).copy()


def npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> dict:
    """The ``.npy`` header of a little-endian C-ordered array."""
    return {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype).newbyteorder("<")),
        "fortran_order": False,
        "shape": tuple(int(s) for s in shape),
    }


def zip_info(name: str) -> zipfile.ZipInfo:
    """A stored (uncompressed) zip member ``name``, time-stamped now in local time as
    :mod:`zipfile` does, or at ``SOURCE_DATE_EPOCH`` (UTC; not before 1980) when that is set."""
    if os.environ.get("SOURCE_DATE_EPOCH", "").strip():
        stamp = max(created_time().timetuple()[:6], (1980, 1, 1, 0, 0, 0))
    else:
        stamp = time.localtime(time.time())[:6]
    info = zipfile.ZipInfo(name, date_time=stamp)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o600 << 16  # what zipfile gives a member named by a string
    return info


def write_member(zf: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    """Store ``array`` as the ``.npy`` member ``name`` (little-endian)."""
    array = np.ascontiguousarray(array)
    with zf.open(zip_info(name), "w", force_zip64=True) as f:
        np.lib.format.write_array_header_1_0(f, npy_header(array.dtype, array.shape))
        f.write(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())


def read_small_member(zf: zipfile.ZipFile, name: str, path: str) -> np.ndarray:
    """Read the ``.npy`` member ``name`` into memory; pickled (object) data are refused."""
    try:
        with zf.open(name) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise EmcsError(
                f"member {name} holds pickled (object) data; emcs never unpickles files", path
            ) from exc
        raise EmcsError(f"member {name} is not a valid array ({exc})", path) from exc
    except DAMAGE as exc:
        raise EmcsError(f"member {name} is corrupt or truncated ({exc})", path) from exc


def read_meta(zf: zipfile.ZipFile, path: str) -> dict:
    """The JSON metadata member as a dict."""
    raw = read_small_member(zf, META_MEMBER, path)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise EmcsError(f"member {META_MEMBER} is not a JSON byte array", path)
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EmcsError(f"the container metadata is not valid JSON ({exc})", path) from exc
    if not isinstance(meta, dict):
        raise EmcsError("the container metadata is not a JSON object", path)
    return meta


def open_measurements(zf: zipfile.ZipFile, path: str, mmap: bool) -> np.ndarray:
    """The plain ``measurements.npy`` member: memory-mapped when stored uncompressed, else read."""
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
    except DAMAGE as exc:
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
    return read_small_member(zf, MEAS_MEMBER, path)


def member_crc(zf: zipfile.ZipFile, name: str, path: str) -> tuple[int, int]:
    """(CRC-32 of the ``.npy`` header of member ``name``, the member's recorded CRC-32):
    what a reader of the array after the header needs to check the member's CRC."""
    try:
        with zf.open(name) as f:
            if np.lib.format.read_magic(f) == (1, 0):
                np.lib.format.read_array_header_1_0(f)
            else:
                np.lib.format.read_array_header_2_0(f)
            n = f.tell()
        with zf.open(name) as f:
            head = f.read(n)
    except (ValueError, *DAMAGE) as exc:
        raise EmcsError(f"member {name} has a bad array header ({exc})", path) from exc
    return zlib.crc32(head), zf.getinfo(name).CRC

"""Tiny vendor microscope files for the tests, written from the published layouts.

No writer exists for these formats, so the tests make their own:

- Gatan DigitalMicrograph DM3 / DM4: the tag-group tree (big-endian header and
  tag headers, little-endian data), an RGBA thumbnail listed under
  ``Thumbnails`` and the image (or stack) with its calibrations; layout as
  documented by Chris Boothroyd's DM3 notes and Gatan's DM4 description (tag
  size fields and 8-byte counts in DM4).
- Thermo Fisher TIA SER: the series header, per-dimension calibration array,
  offset arrays, 2-D data elements and time tags (SeriesVersion 0x0210 with
  32-bit offsets, 0x0220 with 64-bit offsets).
- Thermo Fisher Velox EMD: HDF5 with ``Version`` (JSON), ``Data/Image/<id>/Data``
  stored (height, width, frames) and ``Metadata`` (JSON text as a uint8
  column per frame).
- Falcon EER: BigTIFF pages compressed with EER (compression 65001, 7-bit
  run lengths of skipped pixels, then 2+2 sub-pixel bits per event, read
  least-significant bit first), acquisition metadata XML in tag 65001.
"""

from __future__ import annotations

import json
import struct

import numpy as np

# ----------------------------------------------------------------------------- DM3 / DM4
_DM_SIMPLE = {  # numpy dtype -> DM tag element type
    np.dtype("int16"): 2, np.dtype("int32"): 3, np.dtype("uint16"): 4, np.dtype("uint32"): 5,
    np.dtype("float32"): 6, np.dtype("float64"): 7, np.dtype("int8"): 9, np.dtype("uint8"): 10,
    np.dtype("int64"): 11, np.dtype("uint64"): 12,
}
_DM_IMAGE_TYPE = {  # numpy dtype -> ImageData.DataType
    np.dtype("int16"): 1, np.dtype("float32"): 2, np.dtype("uint8"): 6, np.dtype("int32"): 7,
    np.dtype("int8"): 9, np.dtype("uint16"): 10, np.dtype("uint32"): 11, np.dtype("float64"): 12,
}


class _Units(str):
    """A DM string stored as an array of uint16 characters (how DM stores units, names)."""


class _DM:
    def __init__(self, version: int):
        self.v = version
        self.n = "Q" if version == 4 else "I"

    def count(self, k: int) -> bytes:
        return struct.pack(">" + self.n, k)

    def data_tag(self, value) -> bytes:
        if isinstance(value, np.ndarray):
            arr = np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<"))
            info = [20, _DM_SIMPLE[np.dtype(value.dtype)], arr.size]
            payload = arr.tobytes()
        elif isinstance(value, str):
            chars = np.frombuffer(value.encode("utf-16-le"), "<u2")
            info, payload = [20, 4, chars.size], chars.tobytes()
        elif isinstance(value, bool):
            info, payload = [8], struct.pack("<B", value)
        elif isinstance(value, int):
            info, payload = [3], struct.pack("<i", value)
        elif isinstance(value, float):
            info, payload = [6], struct.pack("<f", value)
        else:
            raise TypeError(type(value))
        return b"%%%%" + self.count(len(info)) + b"".join(self.count(i) for i in info) + payload

    def group(self, items) -> bytes:
        entries = items.items() if isinstance(items, dict) else (("", v) for v in items)
        body = b"".join(self.entry(name, value) for name, value in entries)
        n = len(items)
        return b"\x00\x01" + self.count(n) + body

    def entry(self, name: str, value) -> bytes:
        label = name.encode("latin-1")
        is_group = isinstance(value, (dict, list))
        content = self.group(value) if is_group else self.data_tag(value)
        head = struct.pack(">BH", 20 if is_group else 21, len(label)) + label
        if self.v == 4:
            head += struct.pack(">Q", len(content))
        return head + content


def _calibration(scale: float, units: str) -> dict:
    return {"Origin": 0.0, "Scale": float(scale), "Units": _Units(units)}


def write_dm(path, data: np.ndarray, version: int = 4, pixel_size: float = 0.5,
             units: str = "nm", title: str = "HAADF") -> None:
    """Write a DM3 (``version=3``) or DM4 file holding ``data`` ((H, W) or (T, H, W)).

    The file has a 4x4 RGBA thumbnail first (skipped by readers), then the image,
    calibrated ``pixel_size`` ``units`` per pixel on x and y.
    """
    data = np.asarray(data)
    dims = list(data.shape[::-1])  # DM lists x, y, z
    calib = [_calibration(pixel_size, units), _calibration(pixel_size, units)]
    calib += [_calibration(1.0, "s")] * (data.ndim - 2)
    thumb = np.zeros((4, 4), np.uint32)
    image_list = [
        {"ImageData": {
            "Calibrations": {"Brightness": _calibration(1.0, ""), "Dimension": calib[:2],
                             "DisplayCalibratedUnits": 1},
            "Data": thumb, "DataType": 23, "Dimensions": [4, 4], "PixelDepth": 4},
         "ImageTags": {}, "Name": _Units("thumbnail")},
        {"ImageData": {
            "Calibrations": {"Brightness": _calibration(1.0, "counts"), "Dimension": calib,
                             "DisplayCalibratedUnits": 1},
            "Data": data.reshape(-1), "DataType": _DM_IMAGE_TYPE[data.dtype],
            "Dimensions": [int(d) for d in dims], "PixelDepth": data.dtype.itemsize},
         "ImageTags": {"Acquisition": {"Parameters": {"High Level": {"Binning": [1, 1]}}}},
         "Name": _Units(title)},
    ]
    dm = _DM(version)
    root = dm.group({"ImageList": image_list, "Thumbnails": [{"ImageIndex": 0}]})
    length = struct.pack(">Q" if version == 4 else ">I", len(root))
    with open(path, "wb") as fh:
        fh.write(struct.pack(">i", version) + length + struct.pack(">i", 1) + root + b"\0" * 8)


# ----------------------------------------------------------------------------- TIA SER
_SER_TYPES = {np.dtype("uint8"): 1, np.dtype("uint16"): 2, np.dtype("uint32"): 3,
              np.dtype("int8"): 4, np.dtype("int16"): 5, np.dtype("int32"): 6,
              np.dtype("float32"): 7, np.dtype("float64"): 8}


def write_ser(path, frames: np.ndarray, pixel_size_m: float = 2e-10,
              version: int = 0x0220) -> None:
    """Write a TIA series file of 2-D images (frames (T, H, W)), ``pixel_size_m`` m per pixel."""
    frames = np.asarray(frames)
    n, h, w = frames.shape
    off = "<Q" if version >= 0x0220 else "<I"
    desc, unit = b"Number", b"s"
    header_size = 2 + 2 + 2 + 4 + 4 + 4 + 4 + struct.calcsize(off) + 4
    dim = (struct.pack("<iddi", n, 0.0, 1.0, 0) + struct.pack("<i", len(desc)) + desc
           + struct.pack("<i", len(unit)) + unit)
    elements, tags = [], []
    for k in range(n):
        elements.append(struct.pack("<ddiddih", 0.0, pixel_size_m, 0, 0.0, pixel_size_m, 0,
                                    _SER_TYPES[frames.dtype])
                        + struct.pack("<II", w, h)
                        # TIA stores rows bottom-up (origin at the lower left)
                        + np.ascontiguousarray(frames[k][::-1])
                        .astype(frames.dtype.newbyteorder("<")).tobytes())
        tags.append(struct.pack("<HHI", 0x4152, 0, 1000 + k))
    offsets_at = header_size + len(dim)
    data_at = offsets_at + 2 * n * struct.calcsize(off)
    data_offsets, pos = [], data_at
    for e in elements:
        data_offsets.append(pos)
        pos += len(e)
    tag_offsets = []
    for t in tags:
        tag_offsets.append(pos)
        pos += len(t)
    out = struct.pack("<HHHIIII", 0x4949, 0x0197, version, 0x4122, 0x4152, n, n)
    out += struct.pack(off, offsets_at) + struct.pack("<I", 1) + dim
    out += b"".join(struct.pack(off, o) for o in data_offsets + tag_offsets)
    out += b"".join(elements) + b"".join(tags)
    with open(path, "wb") as fh:
        fh.write(out)


# ----------------------------------------------------------------------------- Velox EMD
def _json_column(obj) -> np.ndarray:
    raw = np.frombuffer(json.dumps(obj).encode(), np.uint8)
    return raw


def write_velox(path, images: dict[str, np.ndarray], pixel_size_m: float = 1e-10) -> None:
    """Write a Velox EMD with one image (H, W) or stack (T, H, W) per detector name."""
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("Version", data=np.array(
            [json.dumps({"format": "Velox", "version": 11}).encode()]))
        group = f.create_group("Data/Image")
        for k, (name, data) in enumerate(images.items()):
            data = np.asarray(data)
            stack = data if data.ndim == 3 else data[None]
            sub = group.create_group(f"{k:032x}")
            sub.create_dataset("Data", data=np.moveaxis(stack, 0, -1),
                               chunks=stack.shape[1:] + (1,))
            meta = {
                "BinaryResult": {"PixelSize": {"width": str(pixel_size_m),
                                               "height": str(pixel_size_m)},
                                 "PixelUnitX": "m", "PixelUnitY": "m",
                                 "Offset": {"x": "0", "y": "0"}, "DetectorIndex": "0"},
                "Detectors": {"Detector-0": {"DetectorName": name, "ExposureTime": "0.1"}},
                "Scan": {"FrameTime": "0.5"},
                "Acquisition": {"AcquisitionStartDatetime": {"DateTime": "1700000000"}},
                "Core": {"MetadataDefinitionVersion": "7.9"},
            }
            col = _json_column(meta)
            sub.create_dataset("Metadata", data=np.repeat(col[:, None], stack.shape[0], axis=1))


# ----------------------------------------------------------------------------- EER
def eer_encode(frame: np.ndarray, skipbits: int = 7) -> bytes:
    """EER bitstream of one fraction (H, W) of 0/1 events, sub-pixel position centred."""
    maxskip = (1 << skipbits) - 1
    bits: list[int] = []

    def put(value: int, n: int) -> None:
        bits.extend((value >> k) & 1 for k in range(n))

    last = 0
    for p in list(np.flatnonzero(np.asarray(frame).ravel())) + [frame.size]:
        gap = int(p) - last
        while gap >= maxskip:
            put(maxskip, skipbits)
            gap -= maxskip
        put(gap, skipbits)
        put(0, 4)  # sub-pixel bits, stored as (x ^ 2) | (y ^ 2) << 2: sub-pixel (2, 2)
        last = int(p) + 1
    bits.extend([0] * (-len(bits) % 64))
    return np.packbits(np.array(bits, np.uint8), bitorder="little").tobytes()


def write_eer(path, fractions: np.ndarray, pixel_size_m: float = 1.5e-10) -> None:
    """Write a Falcon-style EER BigTIFF of ``fractions`` (N, H, W) 0/1 events."""
    fractions = np.asarray(fractions)
    n, h, w = fractions.shape
    xml = ("<metadata>"
           f'<item name="numberOfFrames">{n}</item>'
           f'<item name="sensorImageWidth" unit="pixel">{w}</item>'
           f'<item name="sensorImageHeight" unit="pixel">{h}</item>'
           f'<item name="sensorPixelSize.width" unit="m">{pixel_size_m}</item>'
           f'<item name="sensorPixelSize.height" unit="m">{pixel_size_m}</item>'
           '<item name="exposureTime" unit="s">1.0</item>'
           "</metadata>").encode()
    out = bytearray(b"II" + struct.pack("<HHHQ", 43, 8, 0, 0))
    next_ptr = 8
    for k in range(n):
        strip = eer_encode(fractions[k])
        strip_at = len(out)
        out += strip
        entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 1), (259, 3, 1, 65001),
                   (262, 3, 1, 1), (273, 16, 1, strip_at), (277, 3, 1, 1), (278, 4, 1, h),
                   (279, 16, 1, len(strip))]
        if k == 0:
            xml_at = len(out)
            out += xml
            entries.append((65001, 7, len(xml), xml_at))
        out += b"\0" * (-len(out) % 8)
        ifd_at = len(out)
        struct.pack_into("<Q", out, next_ptr, ifd_at)
        out += struct.pack("<Q", len(entries))
        for tag, typ, cnt, val in sorted(entries):
            fmt = {3: "<H", 4: "<I", 16: "<Q", 7: "<Q"}[typ]
            out += struct.pack("<HHQ", tag, typ, cnt) + struct.pack(fmt, val).ljust(8, b"\0")
        next_ptr = len(out)
        out += struct.pack("<Q", 0)
    with open(path, "wb") as fh:
        fh.write(bytes(out))

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

Members are stored uncompressed. Since format version 5 every measurement
byte is written once, as the measurement is made: integer sums go one ``.npy``
member per measurement (``measurements/00000000.npy`` ..., each in its own
smallest dtype), and the zip CRC-32 of the members is the one integrity
check; ``measurements.npy`` (memory-mappable) holds float sums and
``narrow=False`` ones. Packed containers (format versions 2-5) code the
measurements one per member (:mod:`~emcs.tcs.container.codecs`).

Modules
-------
:mod:`~emcs.tcs.container.schema`
    format versions, member names, the metadata checks, :func:`base_meta`;
:mod:`~emcs.tcs.container.codecs`
    ``pack`` / ``quantize`` validation (:func:`check_packing`), JPEG XL / zstd
    coding, Anscombe quantization; :mod:`~emcs.tcs.container.predictive` is
    the mask-predictive codec;
:mod:`~emcs.tcs.container.writer`
    :class:`ContainerWriter`, which writes while the measurements are made;
:mod:`~emcs.tcs.container.reader`
    :func:`open_container` (a context manager; the checksum is checked during
    the first full read), :func:`load_container` (checks it at once),
    :class:`Container`; :mod:`~emcs.tcs.container.packed` holds the lazily
    decoded :class:`PackedMeasurements`;
:mod:`~emcs.tcs.container.validate`
    :func:`validate`: every problem of a file, as a list (``emcs info --check``);
:mod:`~emcs.tcs.container.members`
    the zip plumbing (``.npy`` members without pickle).

Readers refuse (with :class:`~emcs.errors.EmcsError`) newer format versions,
bad checksums, missing fields, corrupt archives and pickled (object) arrays.
"""

from __future__ import annotations

from emcs.tcs.container.codecs import (
    PACK_CHOICES,
    anscombe_codes,
    anscombe_values,
    check_packing,
    decode_measurement,
    encode_measurement,
    packed_codec,
)
from emcs.tcs.container.packed import PackedMeasurements
from emcs.tcs.container.reader import Container, load_container, open_container
from emcs.tcs.container.schema import (
    CODECS,
    FORMAT_NAME,
    FORMAT_VERSION,
    MEMBERS_VERSION,
    PACKED_VERSION,
    PREDICTIVE_VERSION,
    QUANTIZATIONS,
    QUANTIZED_VERSION,
    UNPACKED_VERSION,
    base_meta,
    packed_member,
)
from emcs.tcs.container.validate import validate
from emcs.tcs.container.writer import ContainerWriter
from emcs.tcs.operator import smallest_int_dtype

__all__ = [
    "CODECS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MEMBERS_VERSION",
    "PACKED_VERSION",
    "PACK_CHOICES",
    "PREDICTIVE_VERSION",
    "QUANTIZATIONS",
    "QUANTIZED_VERSION",
    "UNPACKED_VERSION",
    "Container",
    "ContainerWriter",
    "PackedMeasurements",
    "anscombe_codes",
    "anscombe_values",
    "base_meta",
    "check_packing",
    "decode_measurement",
    "encode_measurement",
    "load_container",
    "open_container",
    "packed_codec",
    "packed_member",
    "smallest_int_dtype",
    "validate",
]

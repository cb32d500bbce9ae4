"""The container format: versions, member names and the metadata checks.

Format versions (``meta["format_version"]``; a reader refuses newer ones):

1. measurements stored plain in ``measurements.npy`` (memory-mappable);
2. measurements coded one per member, ``measurements/00000000.jxl`` ...
   (lossless JPEG XL or zstd);
3. as 2, but the members hold Anscombe quantization codes
   (``meta["measurement_quantization"]``);
4. as 2 or 3, with the mask-predictive codec (:mod:`emcs.tcs.container.predictive`);
5. every byte written once, each measurement as it comes, in its own
   narrowest dtype: one ``.npy`` member per measurement (codec ``"npy"``),
   mask-predictive members, JPEG XL members (``.npy.zst`` for one beyond
   uint16) or zstd-coded ``.npy`` members (codec ``"zstd-npy"``), or one plain
   ``measurements.npy`` (float sums, no narrowing); the integrity check is the
   zip CRC-32 of the members (no ``measurement_sha256``).

``SOURCE_DATE_EPOCH`` (the reproducible-builds convention), when set, is the
``created`` time and the zip members' time stamp, so that two encodes of the
same input are byte-identical.
"""

from __future__ import annotations

import datetime as _dt
import os

from emcs.errors import EmcsError
from emcs.tcs.masks import MASK_ALGORITHM

FORMAT_NAME = "emcs-tcs-measurements"
FORMAT_VERSION = 5  # newest version this emcs reads (and writes, except for jpegxl / zstd packing)
UNPACKED_VERSION = 1
PACKED_VERSION = 2
QUANTIZED_VERSION = 3
PREDICTIVE_VERSION = 4
MEMBERS_VERSION = 5
#: ``meta["measurement_checksum"]`` of version 5: the zip CRC-32 of every measurement member
CHECKSUM_CRC32 = "zip-crc32"
#: measurement quantizations this emcs reads
QUANTIZATIONS = ("anscombe",)
#: lossless codecs for packed measurements: name -> member suffix
CODECS = {"jpegxl-lossless": ".jxl", "zstd": ".zst", "mask-predictive": ".emp", "npy": ".npy",
          "zstd-npy": ".npy.zst"}
KNOWN_MASK_ALGORITHMS = (MASK_ALGORITHM,)
PACKED_PREFIX = "measurements/"
MEAS_MEMBER = "measurements.npy"
COUNTS_MEMBER = "counts.npy"
META_MEMBER = "meta.npy"
MASK_MEMBER = "masks_packed.npy"

# meta fields every container must have (measurement_sha256: versions 1-4 only)
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


def packed_member(k: int, codec: str) -> str:
    """Member name of packed measurement ``k``."""
    return f"{PACKED_PREFIX}{int(k):08d}{CODECS[codec]}"


def member_choices(k: int, codec: str) -> list[tuple[str, str]]:
    """(name, codec) of the members measurement ``k`` of a ``codec`` container may be stored in:
    a version-5 JPEG XL container zstd-codes the ``.npy`` of a measurement beyond uint16."""
    choices = [(packed_member(k, codec), codec)]
    if codec == "jpegxl-lossless":
        choices.append((packed_member(k, "zstd-npy"), "zstd-npy"))
    return choices


def meta_problems(meta: dict) -> list[str]:
    """Every problem of a container's metadata, in the order a reader meets them ([] if none).

    A foreign format or an unreadable/newer version stops the checks (the rest
    would not mean anything).

    Examples
    --------
    >>> meta_problems({"format": "zip"})
    ["not an emcs measurement container (format 'zip')"]
    """
    if meta.get("format") != FORMAT_NAME:
        return [f"not an emcs measurement container (format {meta.get('format')!r})"]
    version = meta.get("format_version")
    if not isinstance(version, int):
        return ["the container has no valid format_version"]
    if version > FORMAT_VERSION:
        return [f"container format version {version} is newer than this emcs supports "
                f"({FORMAT_VERSION}); upgrade emcs"]
    problems = _coding_problems(meta, version)
    missing = [k for k in _REQUIRED if k not in meta
               and not (k == "measurement_sha256" and version >= MEMBERS_VERSION)]
    inp = meta.get("input")
    missing += [f"input.{k}" for k in _REQUIRED_INPUT if k not in (inp if isinstance(inp, dict) else {})]
    if missing:
        problems.append("the container metadata lacks: " + ", ".join(missing))
    problems += [f"the container metadata field {key!r} has the wrong type"
                 for key, typ in _REQUIRED.items() if key in meta and not isinstance(meta[key], typ)]
    if isinstance(meta.get("mask"), dict):
        problems += _mask_problems(meta["mask"])
    return problems


def _coding_problems(meta: dict, version: int) -> list[str]:
    """Problems of the measurement codec and quantization fields."""
    problems = []
    codec = meta.get("measurement_codec")
    if codec is not None and codec not in CODECS:
        problems.append(f"unknown measurement codec {codec!r} (this emcs knows {', '.join(CODECS)}); "
                        "upgrade emcs")
    if codec is not None and version < PACKED_VERSION:
        problems.append(f"a format version {version} container cannot have packed measurements")
    if codec == "mask-predictive" and version < PREDICTIVE_VERSION:
        problems.append(f"a format version {version} container cannot have mask-predictive measurements")
    if codec in ("npy", "zstd-npy") and version < MEMBERS_VERSION:
        problems.append(f"a format version {version} container cannot have {codec} members")
    if version >= MEMBERS_VERSION and meta.get("measurement_checksum") != CHECKSUM_CRC32:
        problems.append(f"unknown measurement checksum {meta.get('measurement_checksum')!r} "
                        f"(this emcs knows {CHECKSUM_CRC32!r}); upgrade emcs")
    quant = meta.get("measurement_quantization")
    if quant is None:
        return problems
    if not isinstance(quant, dict) or quant.get("kind") not in QUANTIZATIONS:
        kind = quant.get("kind") if isinstance(quant, dict) else quant
        return problems + [f"unknown measurement quantization {kind!r} (this emcs knows "
                           f"{', '.join(QUANTIZATIONS)}); upgrade emcs"]
    step = quant.get("step")
    if not isinstance(step, (int, float)) or not 0 < step <= 4:
        problems.append(f"the measurement quantization step {step!r} is invalid")
    if codec is None or version < QUANTIZED_VERSION:
        problems.append("quantized measurements need a packed format version 3 container")
    return problems


def _mask_problems(mask: dict) -> list[str]:
    kind = mask.get("kind")
    if kind == "generated":
        problems = [f"the container metadata lacks mask.{key}" for key in ("algorithm", "seed", "density")
                    if key not in mask]
        if "algorithm" in mask and mask["algorithm"] not in KNOWN_MASK_ALGORITHMS:
            problems.append(f"unknown mask algorithm {mask['algorithm']!r} (this emcs knows "
                            + ", ".join(KNOWN_MASK_ALGORITHMS) + "); upgrade emcs")
        return problems
    if kind == "explicit":
        return [] if "density" in mask else ["the container metadata lacks mask.density"]
    return [f"unknown mask kind {kind!r}"]


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
        "created": created_time().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "B": int(B),
        "n_measurements": int(n),
        "frame_shape": [int(frame_shape[0]), int(frame_shape[1])],
        "last_group_masks": "first-n",
        "mask": mask,
        "input": input_info,
        "encoder": encoder or {},
    }


def created_time() -> _dt.datetime:
    """Now (UTC), or ``SOURCE_DATE_EPOCH`` when set (reproducible builds: byte-identical files).

    Examples
    --------
    >>> os.environ["SOURCE_DATE_EPOCH"] = "315532800"
    >>> created_time().isoformat()
    '1980-01-01T00:00:00+00:00'
    >>> del os.environ["SOURCE_DATE_EPOCH"]
    """
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch:
        try:
            return _dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc)
        except (ValueError, OverflowError, OSError) as exc:
            raise EmcsError(f"SOURCE_DATE_EPOCH must be whole seconds since 1970, got {epoch!r}") from exc
    return _dt.datetime.now(_dt.timezone.utc)

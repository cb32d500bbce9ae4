"""One JSON vocabulary for every command (docs/cli.md): the same fact, the same key.

The library functions return their own summaries; the commands rename their
keys here before printing, so ``emcs encode --json`` and ``emcs info --json``
describe a container with the same keys:

``input``, ``output``
    The file read and the file written, as given on the command line.
``shape``, ``dtype``
    The movie: [frames, height, width] and its pixel type; for the commands
    that write a stack, the stack written (``decode``: ``dtype`` is the type
    written, ``input_dtype`` the input's).
``pixel_size``
    Å per pixel (TCS, DLSS); the SIM commands give nm in ``pixel_size_nm``.
``data_bytes``, ``container_bytes``, ``ratio``
    Bytes of the movie's pixels, of the container file, and their ratio.
``last_group_frames``, ``density``, ``mask_kind``
    Frames of the last (possibly short) group, mask density and kind.
"""

from __future__ import annotations

from typing import Any

#: library key -> CLI key, for every summary
_RENAMES = {
    "output_bytes": "container_bytes",
    "file_bytes": "container_bytes",
    "input_bytes": "data_bytes",
    "counts_last": "last_group_frames",
    "input_shape": "shape",
    "input_dtype": "dtype",
}


def _renamed(summary: dict) -> dict:
    return {_RENAMES.get(k, k): v for k, v in summary.items()}


def encode_json(res: dict) -> dict:
    """An :func:`emcs.tcs.encode.encode_stack` summary in the CLI vocabulary."""
    out = _renamed(res)
    mask = out.get("mask") or {}
    out.setdefault("density", mask.get("density"))
    out.setdefault("mask_kind", mask.get("kind"))
    return out


def container_json(summary: dict) -> dict:
    """A :meth:`emcs.tcs.container.Container.summary` in the CLI vocabulary."""
    return _renamed(summary)


def with_shape(summary: dict, frames_key: str, size_key: str) -> dict:
    """Add ``shape`` ([frames, H, W] of the stack written) to a DLSS or SIM summary."""
    size = summary.get(size_key)
    if size is not None:
        summary["shape"] = [summary[frames_key], *size[-2:]]
    return summary


def emit_results(rep, results: list[dict], failures: list[str]) -> None:
    """One result as it is; several (or any failure) as ``{"results": [...], "failures": [...]}``."""
    payload: Any = results[0] if len(results) == 1 and not failures else {
        "results": results, "failures": failures}
    rep.emit_json(payload)

"""``emcs info``: describe measurement containers and image stacks (several files at once).

A stack gets what IMOD's ``header`` prints: format, shape, pixel type, pixel
size and min / max / mean (:func:`emcs.io.stack_stats`, read in bounded memory).
"""

from __future__ import annotations

import os

import typer

from emcs.cli._app import app
from emcs.cli._common import (
    DATASET_OPTION,
    EER_FRAMES_OPTION,
    EER_UPSAMPLING_OPTION,
    JSON_OPTION,
    KEEP_GOING_OPTION,
    Reporter,
    finish_batch,
    megabytes,
    run_each,
    stack_options,
)
from emcs.cli.schema import container_json, emit_results


def _angstrom(value) -> str:
    return "unknown" if value is None else f"{value:g} Å"


@app.command("info")
def info_cmd(
    files: list[str] = typer.Argument(
        ..., metavar="FILE...", help="Measurement containers (.npz) or image stacks."),
    check: bool = typer.Option(
        False, "--check",
        help="Check each container (metadata, members, checksum) and list every problem found; "
             "exit code 2 when there is one."),
    dataset: str = DATASET_OPTION,
    eer_frames: int = EER_FRAMES_OPTION,
    eer_upsampling: int = EER_UPSAMPLING_OPTION,
    keep_going: bool = KEEP_GOING_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Describe measurement containers or image stacks.

    A container: movie shape and dtype, B, coding, masks, seed, ratio. A stack, like
    IMOD's header: format, shape, dtype, pixel size, min / max / mean.
    """
    rep = Reporter(False, as_json)
    if check:
        _check_containers(files, rep)
        return
    options = stack_options(dataset, eer_frames, eer_upsampling)
    results, failures = run_each(rep, files, lambda f: _describe(f, options, rep), keep_going)
    emit_results(rep, results, failures)
    finish_batch(failures, len(files))


def _describe(file: str, options: dict, rep: Reporter) -> dict:
    if file.lower().endswith(".npz"):
        summary, rows = _container(file)
    else:
        summary, rows = _stack(file, options)
    rep.table(file, rows)
    return summary


def _container(file: str) -> tuple[dict, list]:
    from emcs.tcs.container import load_container

    s = container_json(load_container(file).summary())
    T, H, W = s["shape"]
    quant = s.get("measurement_quantization")
    rows = [
        ("file", file),
        ("kind", f"TCS measurement container, format version {s['format_version']}"),
        ("movie", f"{T} frames {H}x{W} {s['dtype']}" + (f" ({s['source']})" if s["source"] else "")),
        ("value range", f"{s['value_range'][0]:g} .. {s['value_range'][1]:g}"),
        ("pixel size", _angstrom(s["pixel_size"])),
        ("B", str(s["B"])),
        ("measurements", f"{s['n_measurements']} ({s['measurement_dtype']}), "
                         + (f"groups of {g['min_frames']}-{g['max_frames']} frames (mean {g['mean_frames']:g})"
                            if (g := s.get("groups")) and g["groups"] > -(-T // s["B"]) else
                            f"last group {s['last_group_frames']} frames")),
        ("coding", s["measurement_codec"]
                   + (f", quantized (Anscombe step {quant['step']:g}, lossy)" if quant else "")),
        ("masks", s["mask_kind"]
                  + (f", {s['mask_algorithm']}, seed {s['seed']}" if s["mask_kind"] == "generated" else "")
                  + f", density {s['density']:.3f}"),
        ("size", f"{megabytes(s['data_bytes'])} -> {megabytes(s['container_bytes'])}, ratio {s['ratio']:.2f}"),
        ("emcs version", str(s["emcs_version"])),
    ]
    return s, rows


def _stack(file: str, options: dict) -> tuple[dict, list]:
    from emcs.io import open_stack, stack_stats

    with open_stack(file, **options) as stack:
        stats = stack_stats(stack)
        s = {
            "path": file,
            "kind": "stack",
            "format": stack.metadata.get("format"),
            "shape": list(stack.shape),
            "dtype": stack.dtype.name,
            "pixel_size": stack.pixel_size,
            "data_bytes": stack.nbytes,
            "file_bytes": os.path.getsize(file) if os.path.isfile(file) else None,
            "min": stats["min"],
            "max": stats["max"],
            "mean": stats["mean"],
            "std": stats["std"],
        }
    T, H, W = s["shape"]
    rows = [
        ("file", file),
        ("format", str(s["format"])),
        ("shape", f"{T} frames {H}x{W}"),
        ("dtype", s["dtype"]),
        ("pixel size", _angstrom(s["pixel_size"])),
        ("min / max / mean", f"{s['min']:g} / {s['max']:g} / {s['mean']:g} (std {s['std']:g})"),
        ("pixel data", megabytes(s["data_bytes"])),
    ]
    if stats["nonfinite"]:
        rows.append(("non-finite pixels", str(stats["nonfinite"])))
    return s, rows


def _check_containers(files: list[str], rep: Reporter) -> None:
    """``emcs info --check``: every problem of each container on stderr (and in the JSON); exit 2 if any."""
    from emcs.tcs.container import validate

    reports = []
    for file in files:
        problems = validate(file)
        reports.append({"path": file, "valid": not problems, "problems": problems})
        if not problems:
            rep.info(f"{file}: a valid measurement container")
        for problem in problems:
            typer.echo(f"emcs: {file}: {problem}", err=True)
    rep.emit_json(reports[0] if len(reports) == 1 else {"results": reports})
    if any(not r["valid"] for r in reports):
        raise typer.Exit(2)

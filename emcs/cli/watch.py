"""Command ``emcs watch``: encode each movie of a folder once the detector software has written it.

Parse, call :func:`emcs.watch.watch_folder` (inside :func:`emcs.watch.stop_on_signals`),
print one line per movie.
"""

from __future__ import annotations

import signal
from pathlib import Path

import typer

from emcs.cli._app import app
from emcs.cli._common import JSON_OPTION, QUIET_OPTION, Reporter

#: statuses printed even with --quiet
_PROBLEMS = ("failed", "verify-failed", "incomplete")


def describe(record: dict) -> str:
    """One human line for a journal record."""
    status, key = record["status"], record["key"]
    if status in ("encoded", "verified"):
        if record.get("adopted"):
            return f"{status} {key} -> {record['container']} (found complete from an earlier run)"
        T, H, W = record["shape"]
        return (f"{status} {key} -> {record['container']}: {T} frames {H}x{W} {record['dtype']}, "
                f"B={record['B']}, ratio {record['ratio']:.2f}, {record['seconds']:.1f} s "
                f"({record['mb_per_s']:.0f} MB/s)")
    if status == "verify-failed":
        return (f"VERIFY FAILED {key} -> {record['container']}: {'; '.join(record['problems'])} "
                "(the movie is kept)")
    if status == "failed":
        return f"FAILED {key}: {record['error']} (retried when the file changes)"
    if status == "incomplete":
        return f"incomplete {key}: {record['error']} (waiting for it to change)"
    if status == "deleted":
        return f"deleted {key} (verified in {record['container']})"
    return f"waiting for {key} to be finished"


@app.command("watch")
def watch_cmd(
    folder: Path = typer.Argument(..., help="Folder the detector software writes movies into."),
    pattern: str = typer.Option(None, "--pattern", help="Movies to encode, a glob relative to FOLDER ('*.tif', '**/*.mrc'); default: every TIFF, MRC, .npy, DM, EMD, SER and EER file in FOLDER."),
    out: Path = typer.Option(None, "--out", "-o", help="Folder for the containers and the journal (default: FOLDER)."),
    B: int = typer.Option(None, "-B", help="Frames per measurement (default 10, or the --mask's B)."),
    seed: int = typer.Option(None, "--seed", help="Mask seed for every movie (default: a random one per movie, recorded)."),
    density: float = typer.Option(0.5, "--density", help="Fraction of open mask pixels."),
    mask: Path = typer.Option(None, "--mask", help="Explicit binary (B, H, W) mask (.npy/.tif) instead of generated masks."),
    pack: str = typer.Option(None, "--pack", help="Lossless coding of the measurements: none (default), predictive, jpegxl or zstd (as emcs encode)."),
    quantize: float = typer.Option(None, "--quantize", metavar="STEP", help="Lossy, for counting data: Anscombe step in shot-noise units (as emcs encode)."),
    poll: float = typer.Option(2.0, "--poll", help="Seconds between two looks at FOLDER."),
    settle: float = typer.Option(10.0, "--settle", help="A movie is finished once its size and time stamp have not changed for this many seconds."),
    done_marker: str = typer.Option(None, "--done-marker", metavar="SUFFIX", help="Instead of --settle: a movie is finished when a file with this suffix is beside it (.done: movie.tif.done or movie.done)."),
    verify: bool = typer.Option(False, "--verify", help="Check every container (checksum, frame count, shape against the movie)."),
    delete_after_verify: bool = typer.Option(False, "--delete-after-verify", help="Delete each movie once its container is verified and journaled (implies --verify; a movie that failed is never deleted)."),
    once: bool = typer.Option(False, "--once", help="Encode the movies that are finished now, then exit (for cron or a scheduled task)."),
    max_files: int = typer.Option(None, "--max-files", help="Exit after this many movies."),
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Encode every movie written into FOLDER, once it is finished; Ctrl-C or SIGTERM stops cleanly."""
    from emcs.watch import WatchSettings, stop_on_signals, watch_folder

    def log(record: dict) -> None:
        if record["status"] in _PROBLEMS or not (quiet or as_json):
            typer.echo(f"{record['time']} {describe(record)}", err=True)

    settings = WatchSettings(
        folder=str(folder), out=None if out is None else str(out), pattern=pattern, B=B, seed=seed,
        density=density, mask=None if mask is None else str(mask), pack=pack, quantize=quantize,
        poll=poll, settle=settle, done_marker=done_marker, verify=verify,
        delete_after_verify=delete_after_verify, once=once, max_files=max_files)
    with stop_on_signals() as stop:
        if not (quiet or as_json):
            typer.echo(f"watching {folder} -> {settings.out_folder} (Ctrl-C stops)", err=True)
        summary = watch_folder(settings, on_record=log, stop=stop)
    counts = ", ".join(f"{n} {s}" for s, n in summary.items() if isinstance(n, int) and s != "stopped")
    if not (quiet or as_json):
        typer.echo(f"{'stopped' if summary['stopped'] else 'done'}: {counts or 'nothing to do'}; "
                   f"journal {summary['journal']}", err=True)
    Reporter(quiet, as_json).emit_json(summary)
    if stop.signal == signal.SIGINT:
        raise typer.Exit(130)

"""Output helpers shared by every command: progress bars, summaries, JSON.

Rules (from the developers' guide):
- progress bars (rich) go to stderr, only on a terminal and never with ``--quiet``;
- human summaries go to stderr too, so stdout stays clean for pipelines; rich prints
  them on a terminal only (elsewhere they are written as they are and rich is not
  loaded: start-up, benchmarks/encode.md);
- ``--json`` prints exactly one JSON object on stdout;
- off a terminal (a log file), lines are never wrapped.

The options shared by several commands are defined here once (``*_OPTION``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import typer

from emcs.cli._app import stderr_is_terminal
from emcs.errors import EmcsError

QUIET_OPTION = typer.Option(False, "--quiet", "-q", help="No progress bar or summary.")
JSON_OPTION = typer.Option(False, "--json", help="Print a machine-readable JSON summary on stdout.")
FORCE_OPTION = typer.Option(False, "--force", "-f", help="Overwrite existing output files.")
KEEP_GOING_OPTION = typer.Option(
    False, "--keep-going",
    help="With several inputs: report a bad file, finish the others, list the failures at the "
         "end and exit with status 2.")
DATASET_OPTION = typer.Option(
    None, "--dataset", metavar="NAME|INDEX",
    help="Files holding several images (Velox EMD, DM, NCEM EMD): the title or index of the one "
         "to read (default: the first).")
EER_FRAMES_OPTION = typer.Option(
    1, "--eer-frames", metavar="N", help="EER: raw fractions summed into each frame.")
EER_UPSAMPLING_OPTION = typer.Option(
    1, "--eer-upsampling", metavar="1|2|4",
    help="EER: render events on the sensor grid (1) or a 2x / 4x finer grid (super-resolution).")


def megabytes(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def stack_options(dataset: str | None, eer_frames: int = 1, eer_upsampling: int = 1) -> dict:
    """The keyword arguments of :func:`emcs.io.open_stack` from ``--dataset`` and ``--eer-*``."""
    if dataset is not None and dataset.strip().isdigit():
        dataset = int(dataset)
    return {"dataset": dataset, "eer_frames": eer_frames, "eer_upsampling": eer_upsampling}


def _default_options(options: dict) -> bool:
    return options == stack_options(None)


@contextlib.contextmanager
def staged_input(path: str | os.PathLike, options: dict, stdin: bool = False) -> Iterator[str]:
    """A path the library functions (which take file names only) can open with defaults.

    A file read with ``--dataset`` / ``--eer-*`` (and, with ``stdin``, standard
    input ``-``, to be read more than once) is copied chunk by chunk into a
    temporary TIFF (pixel size kept), named after the input and removed
    afterwards; any other path is used as it is.
    """
    import tempfile

    from emcs.io import STDIO, StackWriter, open_stack

    path = os.fspath(path)
    if _default_options(options) and not (stdin and path == STDIO):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="emcs-input-") as folder:
        name = "stdin" if path == STDIO else os.path.splitext(os.path.basename(path))[0]
        staged = os.path.join(folder, name + ".tif")
        with open_stack(path, **options) as stack, \
                StackWriter(staged, stack.shape, stack.dtype, pixel_size=stack.pixel_size) as w:
            for chunk in stack.iter_chunks(max(1, 2**26 // max(1, stack.nbytes // stack.n_frames))):
                w.write(chunk)
        yield staged


@contextlib.contextmanager
def spooled_stdin(path: str | os.PathLike, suffix: str) -> Iterator[str]:
    """``path``, or for ``-`` a temporary copy of standard input (a file that must be seekable,
    like a ``.npz`` container); the copy is removed afterwards."""
    import shutil
    import tempfile

    from emcs.io import STDIO

    path = os.fspath(path)
    if path != STDIO:
        yield path
        return
    if sys.stdin.isatty():
        raise EmcsError("nothing on standard input (give a file name, or pipe data into '-')", STDIO)
    with tempfile.TemporaryDirectory(prefix="emcs-stdin-") as folder:
        spool = os.path.join(folder, "stdin" + suffix)
        with open(spool, "wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out, 2**24)
        yield spool


STACK_OUTPUTS = ("a .tif/.tiff, .mrc/.mrcs or .npy file, a frame pattern (frames/f_%04d.png) or - "
                 "(a TIFF on standard output)")


def check_stack_output(path, force: bool) -> str:
    """Refuse an image-stack output that cannot be written, before any work."""
    from emcs.io import STDIO, WRITE_SUFFIXES, check_output, is_pattern

    path = os.fspath(path)
    if is_pattern(path):
        return path
    if path != STDIO and not path.lower().endswith(WRITE_SUFFIXES):
        raise EmcsError(f"unsupported output type; write {STACK_OUTPUTS}", path)
    return check_output(path, force)


def pixel_size_note(rep: Reporter, path: str, pixel_size_nm: float | None, options: dict) -> str:
    """Where the pixel size comes from (``"option"`` or ``"file"``); a note when ``--pixel-size``
    overrides the value the file records."""
    from emcs.io import STDIO, open_stack

    if pixel_size_nm is None:
        return "file"
    if os.fspath(path) != STDIO:
        with open_stack(path, **options) as stack:
            recorded = stack.pixel_size_nm
        if recorded and abs(recorded - pixel_size_nm) > 1e-6 * recorded:
            rep.note(f"--pixel-size {pixel_size_nm:g} nm overrides the {recorded:g} nm "
                     f"recorded in {path}")
    return "option"


def check_stdout_free(output, as_json: bool) -> None:
    """``-o -`` and ``--json`` both want standard output: refuse the pair."""
    if output is not None and os.fspath(output) == "-" and as_json:
        raise EmcsError("-o - writes the data to standard output, so --json cannot; "
                        "leave out one of them")


def run_each(rep: Reporter, items: Sequence, work: Callable[[Any], Any], keep_going: bool,
             ) -> tuple[list, list[str]]:
    """``work(item)`` for every item; with ``keep_going`` a failing item (an :class:`EmcsError`)
    is reported and skipped. Returns (results of the items that worked, failure lines)."""
    results, failures = [], []
    for item in items:
        try:
            results.append(work(item))
        except EmcsError as exc:
            if not keep_going:
                raise
            failures.append(str(exc))
            rep.warn(f"skipped: {exc}")
    return results, failures


def finish_batch(failures: list[str], total: int) -> None:
    """End a ``--keep-going`` run: list the failures on stderr and exit with status 2 if any."""
    if not failures:
        return
    typer.echo(f"emcs: error: {len(failures)} of {total} inputs failed:", err=True)
    for line in failures:
        typer.echo(f"emcs: error: {line}", err=True)
    raise typer.Exit(2)


class Reporter:
    """Progress and summary output that respects ``--quiet`` and ``--json``."""

    def __init__(self, quiet: bool = False, as_json: bool = False):
        self.quiet = quiet
        self.as_json = as_json
        self._console = None

    @property
    def console(self):
        if self._console is None:
            from rich.console import Console

            terminal = stderr_is_terminal()
            # off a terminal (a log file), never wrap a line: one fact stays on one line
            self._console = Console(stderr=True, highlight=False, soft_wrap=not terminal,
                                    width=None if terminal else 10_000)
        return self._console

    @property
    def show_progress(self) -> bool:
        return not self.quiet and stderr_is_terminal()

    @contextlib.contextmanager
    def progress(self, description: str, total: int | None, unit: str = "frames",
                 per_step: int = 1) -> Iterator[Any]:
        """Yield an ``advance(n=1)`` callable; draws a bar only on a terminal.

        The bar counts ``unit`` with an ETA; ``advance(n)`` adds ``n * per_step``
        of them (a library reporting groups of B frames: ``per_step=B``), never
        beyond ``total``.
        """
        if not self.show_progress:
            yield lambda n=1: None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        ) as prog:
            task = prog.add_task(description, total=total)

            def advance(n: int = 1) -> None:
                step = n * per_step
                if total is not None:
                    step = min(step, total - prog.tasks[0].completed)
                prog.advance(task, step)

            yield advance

    @contextlib.contextmanager
    def progress_callback(self, description: str) -> Iterator[Any]:
        """Yield ``progress(total) -> advance(n)`` for a library call; the bar ends with the block.

        The library calls ``progress(total)`` once it knows how many items it
        will process (the protocol of :func:`emcs.dlss.files.supersample_file`
        and the other file-level functions).
        """
        with contextlib.ExitStack() as bars:
            yield lambda total: bars.enter_context(self.progress(description, total))

    def track(self, items: Iterable, description: str, total: int | None = None,
              unit: str = "files") -> Iterator:
        with self.progress(description, total, unit=unit) as advance:
            for item in items:
                yield item
                advance(1)

    def _line(self, text: str, styled: str | None = None) -> None:
        """One line on stderr: printed by rich on a terminal (``styled``: the line with rich
        markup), written as it is elsewhere (a log, a pipe: rich is not even loaded)."""
        if stderr_is_terminal():
            self.console.print(text if styled is None else styled)
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def info(self, message: str) -> None:
        """A human line on stderr (suppressed by --quiet and --json)."""
        if not self.quiet and not self.as_json:
            self._line(message)

    def note(self, message: str) -> None:
        """A note on stderr (why a fallback was taken); shown with --json, not with --quiet."""
        if not self.quiet:
            self._line(f"note: {message}")

    def warn(self, message: str) -> None:
        """A warning on stderr; shown even with --json (stdout stays clean)."""
        if not self.quiet:
            self._line(f"warning: {message}", styled=f"[yellow]warning:[/yellow] {message}")

    def table(self, title: str, rows: list[tuple[str, str]]) -> None:
        if self.quiet or self.as_json:
            return
        from rich.table import Table

        table = Table(title=title, show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        for key, value in rows:
            table.add_row(key, value)
        self.console.print(table)

    def emit_json(self, payload: Any) -> None:
        """The one JSON object on stdout (non-finite numbers as the strings "nan", "inf", "-inf")."""
        if self.as_json:
            text = json.dumps(_json_safe(payload), indent=2, default=_json_default)
            sys.stdout.write(text + "\n")
            sys.stdout.flush()


def _json_safe(obj: Any) -> Any:
    """Replace non-finite floats by the strings "inf", "-inf", "nan" (strict JSON)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(obj)


def parse_range(text: str, option: str) -> tuple[float, float]:
    """A ``LO,HI`` range of a CLI option (one value: LO = HI); one clear error line otherwise."""
    try:
        parts = [float(v) for v in text.split(",")]
    except ValueError:
        raise EmcsError(f"{option} must be 'LO,HI', got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not parts[0] <= parts[1]:
        raise EmcsError(f"{option} must be 'LO,HI' with LO <= HI, got {text!r}")
    return parts[0], parts[1]


def parse_ints(text: str, option: str) -> tuple[int, ...]:
    """Comma-separated integers of a CLI option (``10,20,30``); one clear error line otherwise."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise EmcsError(f"{option} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise EmcsError(f"{option} needs at least one value")
    return values

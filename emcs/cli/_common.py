"""Output helpers shared by every command: progress bars, summaries, JSON.

Rules (from the developers' guide):
- progress bars (rich) go to stderr, only on a terminal and never with ``--quiet``;
- human summaries go to stderr too, so stdout stays clean for pipelines;
- ``--json`` prints exactly one JSON object on stdout.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import typer

from emcs.cli._app import stderr_is_terminal
from emcs.errors import EmcsError

QUIET_OPTION = typer.Option(False, "--quiet", "-q", help="No progress bar or summary.")
JSON_OPTION = typer.Option(False, "--json", help="Print a machine-readable JSON summary on stdout.")
FORCE_OPTION = typer.Option(False, "--force", "-f", help="Overwrite existing output files.")


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

            self._console = Console(stderr=True, highlight=False)
        return self._console

    @property
    def show_progress(self) -> bool:
        return not self.quiet and stderr_is_terminal()

    @contextlib.contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[Any]:
        """Yield an ``advance(n=1)`` callable; draws a bar only on a terminal."""
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
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        ) as prog:
            task = prog.add_task(description, total=total)
            yield lambda n=1: prog.advance(task, n)

    @contextlib.contextmanager
    def progress_callback(self, description: str) -> Iterator[Any]:
        """Yield ``progress(total) -> advance(n)`` for a library call; the bar ends with the block.

        The library calls ``progress(total)`` once it knows how many items it
        will process (the protocol of :func:`emcs.dlss.files.supersample_file`
        and the other file-level functions).
        """
        with contextlib.ExitStack() as bars:
            yield lambda total: bars.enter_context(self.progress(description, total))

    def track(self, items: Iterable, description: str, total: int | None = None) -> Iterator:
        with self.progress(description, total) as advance:
            for item in items:
                yield item
                advance(1)

    def info(self, message: str) -> None:
        """A human line on stderr (suppressed by --quiet and --json)."""
        if not self.quiet and not self.as_json:
            self.console.print(message)

    def warn(self, message: str) -> None:
        """A warning on stderr; shown even with --json (stdout stays clean)."""
        if not self.quiet:
            self.console.print(f"[yellow]warning:[/yellow] {message}")

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
        if self.as_json:
            sys.stdout.write(json.dumps(payload, indent=2, default=_json_default) + "\n")
            sys.stdout.flush()


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

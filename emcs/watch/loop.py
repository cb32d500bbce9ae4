"""The watch loop: look at the folder, encode each finished movie once, journal it."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from emcs.errors import EmcsError
from emcs.io import clean_stale_partials
from emcs.tcs.container import check_packing
from emcs.tcs.encode import check_mask_options
from emcs.watch.journal import JOURNAL_NAME, Journal, folder_lock, unchanged
from emcs.watch.ready import SettleTracker, has_marker, incomplete_reason, marker_paths
from emcs.watch.task import (
    MOVIE_SUFFIXES,
    Stopped,
    WatchSettings,
    base_record,
    container_path,
    encode_one,
    file_state,
    masks_of,
    movie_key,
    verify_container,
)

#: record statuses that count as a processed movie (for ``max_files`` and the summary)
DONE = ("encoded", "verified", "verify-failed", "failed")


class StopFlag(threading.Event):
    """An event set by :func:`stop_on_signals`; ``signal`` is the signal that set it."""

    signal: int | None = None


@contextlib.contextmanager
def stop_on_signals(signals: tuple[int, ...] | None = None) -> Iterator[StopFlag]:
    """Turn SIGINT (Ctrl-C) and SIGTERM into a :class:`StopFlag` while the block runs.

    The first signal asks the watcher to stop (the movie being encoded is
    abandoned cleanly); a second Ctrl-C raises :class:`KeyboardInterrupt` at
    once. Must be entered in the main thread.
    """
    if signals is None:
        signals = (signal.SIGINT, signal.SIGTERM)
    flag = StopFlag()

    def handler(signum, _frame):
        if flag.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.signal = signum
        flag.set()

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def check_settings(settings: WatchSettings) -> None:
    """Raise :class:`EmcsError` for settings no movie could be watched or encoded with."""
    if not os.path.isdir(settings.folder):
        raise EmcsError("no such folder to watch", settings.folder)
    if not settings.poll > 0:
        raise EmcsError(f"poll must be > 0 seconds, got {settings.poll}", param="poll")
    if not settings.settle >= 0:
        raise EmcsError(f"settle must be >= 0 seconds, got {settings.settle}", param="settle")
    if settings.max_files is not None and settings.max_files < 1:
        raise EmcsError(f"max_files must be at least 1, got {settings.max_files}", param="max_files")
    if settings.done_marker is not None and not settings.done_marker.strip():
        raise EmcsError("done_marker must be a non-empty suffix such as '.done'", param="done_marker")
    check_packing(settings.pack, settings.quantize)
    masks = masks_of(settings)
    check_mask_options(None if masks is not None else settings.B, settings.density, settings.seed)
    if masks is not None:
        if settings.seed is not None:
            raise EmcsError("seed and mask exclude each other (an explicit mask has no seed)",
                            param="seed")
        if settings.B is not None and settings.B != masks.shape[0]:
            raise EmcsError(f"B is {settings.B} but the mask has {masks.shape[0]} frames",
                            settings.mask, param="B")


def candidates(settings: WatchSettings) -> list[str]:
    """The movie files in the watched folder, oldest first (hidden and emcs's own files left out)."""
    folder = Path(settings.folder)
    if settings.pattern:
        found = [p for p in folder.glob(settings.pattern) if p.is_file()]
    else:
        found = [p for p in folder.iterdir()
                 if p.is_file() and p.name.lower().endswith(MOVIE_SUFFIXES)]
    out = Path(settings.out_folder).resolve()
    keep = []
    for p in found:
        if p.name.startswith(".") or p.name == JOURNAL_NAME or p.suffix.lower() == ".npz":
            continue
        if settings.done_marker and p.name.endswith(settings.done_marker):
            continue
        if out != folder.resolve() and out in p.resolve().parents:
            continue  # our own output folder inside the watched one
        keep.append(p)
    return [str(p) for p in sorted(keep, key=_mtime)]


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return float("inf")


class Watcher:
    """One run of the watch loop over ``settings.folder`` (see :func:`watch_folder`)."""

    def __init__(self, settings: WatchSettings, journal: Journal, on_record: Callable[[dict], None],
                 stop: threading.Event, executor: cf.Executor | None):
        self.settings = settings
        self.journal = journal
        self.on_record = on_record
        self.stop = stop
        self.executor = executor
        self.tracker = SettleTracker(settings.settle)
        self.counts: dict[str, int] = {}
        self._announced: set[str] = set()

    # ------------------------------------------------------------------ records
    def emit(self, record: dict, journal: bool = True) -> None:
        if journal:
            self.journal.append(record)
        self.counts[record["status"]] = self.counts.get(record["status"], 0) + 1
        self.on_record(record)

    @property
    def processed(self) -> int:
        return sum(self.counts.get(s, 0) for s in DONE)

    def limit_reached(self) -> bool:
        return self.settings.max_files is not None and self.processed >= self.settings.max_files

    # ------------------------------------------------------------------ scanning
    def ready(self) -> list[tuple[str, bool]]:
        """The finished movies not yet journaled, as (path, overwrite its container)."""
        out = []
        paths = candidates(self.settings)
        self.tracker.retain(paths)
        self._announced.intersection_update(paths)
        for path in paths:
            state = file_state(path)
            if state is None:
                continue  # moved away meanwhile
            last = self.journal.last(movie_key(path, self.settings))
            if unchanged(last, state):
                self.tracker.forget(path)
                if last["status"] == "verified" and self.settings.delete_after_verify:
                    self.delete(path, state)  # verified before a restart, not yet deleted
                continue
            if not self._finished(path, state):
                if path not in self._announced:
                    self._announced.add(path)
                    self.emit(base_record(path, self.settings, state, "waiting"), journal=False)
                continue
            self.tracker.forget(path)
            self._announced.discard(path)
            reason = incomplete_reason(path)
            if reason is not None:
                self.emit(base_record(path, self.settings, state, "incomplete", error=reason))
                continue
            job = self._claim(path, state, last)
            if job is not None:
                out.append(job)
        return out

    def _finished(self, path: str, state: tuple[int, int]) -> bool:
        if self.settings.done_marker:
            return has_marker(path, self.settings.done_marker)
        return self.tracker.settled(path, state)

    def _claim(self, path: str, state: tuple[int, int], last: dict | None) -> tuple[str, bool] | None:
        """(path, overwrite) to encode, or None when an existing container settles the movie.

        A container this watcher wrote for an earlier version of the movie is
        replaced, unless that movie was deleted (the container is then its only
        copy). A container nobody journaled is adopted when it is a good
        encoding of this very movie (a run killed between writing and
        journaling it), and never overwritten otherwise.
        """
        key, container = movie_key(path, self.settings), container_path(path, self.settings)
        owner = self.journal.owner(container)
        exists = os.path.exists(container)
        if owner is not None and owner != key:
            error = f"{owner} already wrote this container; rename one of the two movies"
        elif owner == key and exists and last is not None and last["status"] == "deleted":
            error = ("a movie of this name was encoded into this container and deleted; the "
                     "container is kept: rename the new movie or move the container away")
        elif owner == key or not exists:
            return path, owner == key and exists
        else:
            problems = verify_container(container, path)
            if not problems:
                status = "verified" if self.settings.verifies else "encoded"
                self.finish(base_record(path, self.settings, state, status, container=container,
                                        adopted=True, problems=[]))
                return None
            error = f"a container of another origin is in the way ({problems[0]}); move it away"
        self.emit(base_record(path, self.settings, state, "failed", container=container,
                              error=error))
        return None

    # ------------------------------------------------------------------ processing
    def finish(self, record: dict) -> None:
        """Journal a movie's record, then delete the movie if it was verified and that is asked."""
        self.emit(record)
        if record["status"] == "verified" and self.settings.delete_after_verify:
            self.delete(record["input"], (record["size"], record["mtime_ns"]))

    def delete(self, path: str, state: tuple[int, int]) -> None:
        """Delete a verified, journaled movie (and its done-marker), checking its container again.

        The movie is kept when it changed since it was verified, when the
        container no longer passes, or when it cannot be deleted.
        """
        container = container_path(path, self.settings)
        problems = verify_container(container, path) if file_state(path) == state else [
            "the movie changed after it was verified"]
        if problems:
            self.emit(base_record(path, self.settings, state, "verify-failed", container=container,
                                  problems=problems))
            return
        try:
            os.unlink(path)
        except OSError as exc:
            self.emit(base_record(path, self.settings, state, "failed", container=container,
                                  error=f"verified, but it cannot be deleted ({exc.strerror})"))
            return
        if self.settings.done_marker:
            for marker in marker_paths(path, self.settings.done_marker):
                with contextlib.suppress(OSError):
                    os.unlink(marker)
        self.emit(base_record(path, self.settings, state, "deleted", container=container))

    def process(self, jobs: list[tuple[str, bool]]) -> None:
        room = None if self.settings.max_files is None else self.settings.max_files - self.processed
        jobs = jobs[:room]
        if self.executor is None:
            for path, overwrite in jobs:
                if self.stop.is_set():
                    return
                self.finish(encode_one(path, self.settings, overwrite=overwrite,
                                       stop=self.stop.is_set))
            return
        futures = [self.executor.submit(encode_one, path, self.settings, overwrite=overwrite)
                   for path, overwrite in jobs]
        for future in cf.as_completed(futures):
            if self.stop.is_set():
                for f in futures:
                    f.cancel()  # those not started; running ones finish and are journaled
            if not future.cancelled():
                self.finish(future.result())

    def run(self) -> None:
        while not self.stop.is_set():
            jobs = self.ready()
            self.process(jobs)
            if self.settings.once or self.limit_reached():
                return
            self.stop.wait(self.settings.poll)


def watch_folder(settings: WatchSettings, *, on_record: Callable[[dict], None] | None = None,
                 stop: threading.Event | None = None, executor: cf.Executor | None = None) -> dict:
    """Encode every movie that appears in ``settings.folder``, once it is completely written.

    Parameters
    ----------
    settings : WatchSettings
    on_record : callable, optional
        Called with every record: those journaled (``encoded``, ``verified``,
        ``verify-failed``, ``failed``, ``incomplete``, ``deleted``) and the
        ``waiting`` notice of a movie first seen while still being written.
    stop : threading.Event, optional
        Set it (from a signal handler: :func:`stop_on_signals`, or another
        thread) to stop: the movie being encoded is abandoned (no partial
        container is left; it is encoded again at the next start).
    executor : concurrent.futures.Executor, optional
        Run :func:`encode_one` there (a thread pool, a Dask client's
        executor); by default movies are encoded one after the other here.

    Returns
    -------
    dict
        ``folder``, ``out``, ``journal``, ``stopped`` (True when ``stop`` ended
        it), and per status the number of records (``encoded``, ``failed`` ...).
    """
    check_settings(settings)
    out = settings.out_folder
    os.makedirs(out, exist_ok=True)
    stop = threading.Event() if stop is None else stop
    with folder_lock(out):
        clean_stale_partials(out)
        journal = Journal(out)
        watcher = Watcher(settings, journal, on_record or (lambda _r: None), stop, executor)
        try:
            watcher.run()
        except (KeyboardInterrupt, Stopped):
            stop.set()  # a second Ctrl-C: the movie being encoded was abandoned cleanly
    return {"folder": os.path.abspath(settings.folder), "out": out, "journal": journal.path,
            "stopped": stop.is_set(), **watcher.counts}

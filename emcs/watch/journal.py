"""The watch journal: one JSON line per event, in the output folder.

``emcs-watch.jsonl`` records, for every movie handled, the input (its path
relative to the watched folder as ``key``, the absolute ``input`` path, its
``size`` and ``mtime_ns``), the ``status`` (``encoded``, ``verified``,
``verify-failed``, ``failed``, ``incomplete``, ``deleted``), the
``container`` and its ``members_sha256`` (a fingerprint of its members), and the encode summary. Each
line is written with one ``write`` on a file opened for appending and then
flushed to disk (``fsync``), so a crash leaves at most one torn last line,
which the next start skips.

The last line of a key decides: a restart skips a movie whose journaled size
and mtime are unchanged (encoded or failed alike: a failed movie is retried
only once it changes), and encodes it again when it has changed.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator

from emcs.errors import EmcsError

JOURNAL_NAME = "emcs-watch.jsonl"
LOCK_NAME = ".emcs-watch.lock"
#: the fields of a record kept in memory per movie (the rest stays on disk)
_KEPT = ("key", "status", "size", "mtime_ns", "container", "input")


class Journal:
    """The journal of one output folder, read once at start and appended to.

    Parameters
    ----------
    folder : str
        The output folder (created if missing).

    Examples
    --------
    >>> import tempfile
    >>> j = Journal(tempfile.mkdtemp())
    >>> j.append({"key": "a.tif", "status": "failed", "size": 3, "mtime_ns": 7})
    >>> Journal(j.folder).last("a.tif")["status"]
    'failed'
    """

    def __init__(self, folder: str):
        self.folder = folder
        self.path = os.path.join(folder, JOURNAL_NAME)
        self.torn_lines = 0
        self._last: dict[str, dict] = {}
        self._owner: dict[str, str] = {}  # container -> key that wrote it
        os.makedirs(folder, exist_ok=True)
        for record in self._read():
            self._remember(record)

    def _read(self) -> Iterator[dict]:
        if not os.path.exists(self.path):
            return
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    self.torn_lines += 1  # a line cut short by a crash
                    continue
                if isinstance(record, dict) and "key" in record:
                    yield record

    def _remember(self, record: dict) -> None:
        kept = {k: record[k] for k in _KEPT if k in record}
        self._last[record["key"]] = kept
        if record.get("container") and record.get("status") != "failed":
            self._owner[record["container"]] = record["key"]

    def append(self, record: dict) -> None:
        """Write ``record`` as one line (one ``write``, then ``fsync``) and remember it."""
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._remember(record)

    def last(self, key: str) -> dict | None:
        """The last record of ``key`` (its kept fields), or None."""
        return self._last.get(key)

    def owner(self, container: str) -> str | None:
        """The key of the movie that wrote ``container``, or None."""
        return self._owner.get(container)

    def __len__(self) -> int:
        return len(self._last)


def unchanged(record: dict | None, state: tuple[int, int]) -> bool:
    """True if the journaled ``record`` saw the file with ``state`` (size, mtime_ns)."""
    return record is not None and (record.get("size"), record.get("mtime_ns")) == state


@contextlib.contextmanager
def folder_lock(folder: str) -> Iterator[None]:
    """Hold an exclusive lock on ``folder``'s journal: one watcher per output folder.

    Uses ``fcntl.flock`` where it exists (Linux, macOS) and ``msvcrt.locking``
    on Windows; the lock goes away with the process, so a killed watcher never
    leaves it behind.
    """
    path = os.path.join(folder, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            _lock(fd)
        except OSError:
            raise EmcsError("another emcs watch is writing into this output folder", folder,
                            param="out") from None
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

"""Temporary files of atomic writes: their names, and the removal of stale ones.

An atomic write (:func:`emcs.io.atomic_output`) first writes a hidden
temporary file beside the target, named

    ``.<target name>.<pid>-<random>.part<suffix>``  (e.g. ``.run1.npz.4711-k2j3.part.npz``)

and renames it to the target on success or removes it on error. A run that is
killed (SIGKILL, power cut) cannot remove it; the next atomic write into the
same folder removes every such file whose owner process is gone, or that is
older than :data:`STALE_AGE_S` (a process id may have been reused, or the
writer was on another machine sharing the folder).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time

STALE_AGE_S = 24 * 3600
_PART = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)-[0-9a-z]{8}\.part(\.[^.]+)?$")


def partial_path(path: str) -> str:
    """A fresh temporary name for writing ``path`` (same folder, same suffix)."""
    folder, base = os.path.split(os.path.abspath(path))
    suffix = os.path.splitext(base)[1]
    token = secrets.token_hex(4)
    return os.path.join(folder, f".{base}.{os.getpid()}-{token}.part{suffix}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def is_stale(name: str, mtime: float, now: float | None = None) -> bool:
    """True if ``name`` is an emcs temporary file whose writer is gone.

    >>> is_stale(".out.tif.999999999-0a1b2c3d.part.tif", mtime=0.0)
    True
    >>> is_stale("out.tif", mtime=0.0)
    False
    """
    match = _PART.match(name)
    if match is None:
        return False
    now = time.time() if now is None else now
    return now - mtime > STALE_AGE_S or not _pid_alive(int(match["pid"]))


def clean_stale_partials(folder: str) -> list[str]:
    """Remove the stale temporary files of killed emcs runs in ``folder``.

    Returns the paths removed. Files that are not emcs temporary files, and
    those of runs still alive, are never touched.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(".") or ".part" not in entry.name:
            continue
        with contextlib.suppress(OSError):
            if entry.is_file(follow_symlinks=False) and is_stale(entry.name,
                                                                 entry.stat().st_mtime):
                os.unlink(entry.path)
                removed.append(entry.path)
    return removed

"""``-`` as a file name: standard input for readers, standard output for writers.

Reading: the bytes on stdin are copied in 16 MiB blocks to a hidden temporary
file (memory stays bounded whatever the size), the format is recognised from
the first bytes (TIFF/BigTIFF, ``.npy``, MRC, Gatan DM3/DM4, HDF5 EMD, TIA
SER), and the file is read like any other; it is unlinked as soon as it is
open, so nothing is left behind (spool files of a run killed while copying
are named like other temporary files and removed by a later run, see
:mod:`emcs.io.partial`).

Writing: the output is written to a temporary file (TIFF for image stacks, or
what the caller asks, e.g. ``.npz`` for a container) and copied to stdout when
complete. Binary data are never written to a terminal.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator

from emcs.errors import EmcsError
from emcs.io.partial import clean_stale_partials, partial_path

STDIO = "-"
_BLOCK = 16 * 2**20


def _sniff_suffix(head: bytes) -> str | None:
    """The suffix of the format whose signature starts ``head`` (1 KiB or more)."""
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return ".tif"
    if head[:6] == b"\x93NUMPY":
        return ".npy"
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        return ".emd"
    if head[:4] in (b"\x00\x00\x00\x03", b"\x00\x00\x00\x04"):
        return ".dm4" if head[3] == 4 else ".dm3"
    if head[:4] == b"II\x97\x01":
        return ".ser"
    if head[208:211] == b"MAP":
        return ".mrc"
    return None


def open_stdin(opener: Callable[[str], object]):
    """Spool standard input to a temporary file and open it with ``opener(path)``."""
    source = sys.stdin.buffer
    if source.isatty():
        raise EmcsError("nothing on standard input (give a file name, or pipe data into '-')",
                        STDIO)
    head = source.read(1024)
    suffix = _sniff_suffix(head)
    if suffix is None:
        raise EmcsError(
            "unrecognised data on standard input; pipe a TIFF, MRC, .npy, DM3/DM4, EMD or SER "
            "file", STDIO,
        )
    tmp = _spool_path("emcs-stdin" + suffix)
    try:
        with open(tmp, "xb") as out:
            out.write(head)
            shutil.copyfileobj(source, out, _BLOCK)
        stack = opener(tmp)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # an open file stays readable on POSIX
    return stack


def _spool_path(name: str) -> str:
    """A temporary path in the system temp folder, after removing stale ones of killed runs."""
    folder = tempfile.gettempdir()
    clean_stale_partials(folder)
    return partial_path(os.path.join(folder, name))


def check_stdout() -> None:
    """Refuse to write binary data to a terminal."""
    if sys.stdout.isatty():
        raise EmcsError("refusing to write binary data to a terminal; redirect stdout "
                        "(> file or | program)", STDIO)


@contextlib.contextmanager
def stdout_output(suffix: str) -> Iterator[str]:
    """Yield a temporary path; on success copy it to standard output, always remove it."""
    check_stdout()
    tmp = _spool_path("emcs-stdout" + suffix)
    try:
        yield tmp
        sys.stdout.flush()
        with open(tmp, "rb") as src:
            shutil.copyfileobj(src, sys.stdout.buffer, _BLOCK)
        sys.stdout.buffer.flush()
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)

"""Errors that describe a user's mistake (bad file, bad option) rather than a bug.

The CLI turns every :class:`EmcsError` into one line on stderr and exit code 2.
"""

from __future__ import annotations

import os


class EmcsError(Exception):
    """A problem with the user's input, reported as one clear line.

    Parameters
    ----------
    message : str
        What is wrong, in words a microscopist understands.
    path : str or os.PathLike, optional
        The file the problem is about; it is named first in the message.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.message = message
        self.path = None if path is None else os.fspath(path)
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.path is None:
            return self.message
        return f"{self.path}: {self.message}"

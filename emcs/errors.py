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
    param : str, optional
        The library parameter the problem is about (``"quantize"``, ``"B"``).
        Library code speaks parameter words ("quantize must be >= 0"); the CLI
        renames the parameter to its flag ("--quantize must be >= 0") with
        :meth:`with_flags`, so the library never speaks CLI flags.

    Examples
    --------
    >>> err = EmcsError("quantize must be >= 0, got -1", param="quantize")
    >>> str(err)
    'quantize must be >= 0, got -1'
    >>> str(err.with_flags({"quantize": "--quantize"}))
    '--quantize must be >= 0, got -1'
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None,
                 param: str | None = None):
        self.message = message
        self.path = None if path is None else os.fspath(path)
        self.param = param
        super().__init__(str(self))

    def with_flags(self, flags: dict[str, str]) -> EmcsError:
        """The same error with its parameter name replaced by the CLI flag in ``flags``.

        Only a message that starts with the parameter name is rewritten (the
        common form "NAME must be ..."); anything else is returned unchanged.
        """
        flag = flags.get(self.param or "")
        if flag is None or not self.message.startswith(self.param):
            return self
        return EmcsError(flag + self.message[len(self.param):], self.path, self.param)

    def __str__(self) -> str:
        if self.path is None:
            return self.message
        return f"{self.path}: {self.message}"

"""The optional packages of the physical generators (the ``[sim]`` extra: abTEM and ASE).

They are imported on first use; when one is missing, :func:`require` raises an
:class:`~emcs.errors.EmcsError` that names the extra, so a user sees one line instead
of a traceback, and :func:`have` lets training leave the kinds that need them out (and
say so) instead of failing mid-run.
"""

from __future__ import annotations

import importlib
import importlib.util

from emcs.errors import EmcsError

__all__ = ["EXTRA", "have", "require"]

#: the pip extra that installs abTEM and ASE
EXTRA = "emcs[sim]"
_NAMES = {"abtem": "abTEM", "ase": "ASE"}


def have(module: str) -> bool:
    """Whether the top-level package of ``module`` (e.g. "ase.cluster") is installed."""
    top = module.split(".")[0]
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, what: str):
    """Import ``module`` or raise ``EmcsError("<what> need(s) <package>: pip install 'emcs[sim]'")``.

    Parameters
    ----------
    module : str
        Dotted module name, e.g. "abtem" or "ase.cluster".
    what : str
        What needs it, in words, e.g. "the HRTEM kinds".
    """
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] != top:
            raise  # the package is there but one of its own dependencies is broken: show it
        raise EmcsError(f"{what} need {_NAMES.get(top, top)}: pip install '{EXTRA}'") from None

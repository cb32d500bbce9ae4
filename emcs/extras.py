"""What an installation provides: optional extras (heavy dependencies only some commands need,
with a one-line error without them) and how to repair a damaged installation.

The core install (``pip install emcs``) is what encode, decode, supersample,
sim-recon, info, compare and demo need. The rest comes with pip extras
(``pyproject.toml``, ``[project.optional-dependencies]``):

- ``sim``: abTEM + ASE, to simulate microscopy data (``emcs simulate``, training data;
  not needed for SIM reconstruction, ``emcs sim-recon``, which is core);
- ``formats``: RosettaSciIO, for vendor file formats (DM3/DM4, EMD, ...);
- ``dask``: Dask distributed and dask-jobqueue, to run over many files and nodes;
- ``all``: all of the above.

>>> require("json", "sim", "this example").__name__
'json'
>>> require("no_such_module_xyz", "sim", "emcs simulate hrtem-particle")
Traceback (most recent call last):
...
emcs.errors.EmcsError: emcs simulate hrtem-particle needs the optional extra 'sim' (no_such_module_xyz is not installed): pip install 'emcs[sim]'
"""

from __future__ import annotations

import importlib
from types import ModuleType

from emcs.errors import EmcsError

#: the extras of pyproject.toml a caller may name (tests/test_packaging.py checks they match)
EXTRAS = ("sim", "formats", "dask", "all")
#: the fix for shipped files (networks, the demo movie) that are missing or damaged
REINSTALL = ("the emcs installation is incomplete or damaged: reinstall it "
             "(pip install --force-reinstall --no-deps <the emcs wheel or source folder>)")


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` or raise :class:`EmcsError` telling which extra installs it.

    Parameters
    ----------
    module : str
        Module to import (``"abtem"``, ``"rsciio"``, ``"dask.distributed"``).
    extra : str
        The pip extra that provides it, one of :data:`EXTRAS`.
    what : str
        What needs it, in the user's words (``"emcs simulate hrtem-particle"``).

    Returns
    -------
    module
        The imported module.
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}, expected one of {EXTRAS}")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise EmcsError(f"{what} needs the optional extra {extra!r} ({exc.name} is not installed): "
                        f"pip install 'emcs[{extra}]'") from exc


__all__ = ["EXTRAS", "REINSTALL", "require"]

"""The optional packages of the physical generators (the ``[sim]`` extra: abTEM and ASE).

They are imported on first use; when one is missing, :func:`require` raises an
:class:`~emcs.errors.EmcsError` that names the extra, so a user sees one line instead
of a traceback, and :func:`have` lets training leave the kinds that need them out (and
say so) instead of failing mid-run.
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings

from emcs.errors import EmcsError

__all__ = ["EXTRA", "configure_abtem", "have", "require"]

#: the pip extra that installs abTEM and ASE
EXTRA = "emcs[sim]"
_NAMES = {"abtem": "abTEM", "ase": "ASE"}
_ABTEM = None


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


def configure_abtem():
    """Import abTEM configured for this use: CPU, numpy FFT, eager, quiet, one thread."""
    global _ABTEM
    if _ABTEM is not None:
        return _ABTEM
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        abtem = require("abtem", "the HRTEM kinds and the exit-wave cache")
        import dask  # installed with abTEM

    # numpy's FFT (pocketfft) rather than FFTW: FFTW_MEASURE picks its algorithm by timing, so
    # results then differ in the last bits between runs and a seed no longer fixes the movie
    # (and its Poisson noise); numpy's FFT is deterministic and ~1.5x slower here.
    abtem.config.set({
        "device": "cpu",
        "fft": "numpy",
        "dask.lazy": False,
        "diagnostics.progress_bar": False,
        "fftw.threads": 1,
        "mkl.threads": 1,
    })
    dask.config.set(scheduler="synchronous")
    _ABTEM = abtem
    return abtem

"""The ``emcs`` command line: a thin Typer layer that parses and delegates.

One module per capability registers its commands on the shared app:
``tcs`` (encode, decode, info, demo, train tcs), ``simulate``, ``compare``,
``dlss`` (subsample, supersample, train dlss) and ``sim`` (sim-recon,
resolution, train sim).
"""

from __future__ import annotations

# import order = order in `emcs --help`
from emcs.cli import tcs  # noqa: I001,F401  (encode, decode, info, demo)
from emcs.cli import simulate, compare, dlss, sim, tcs_train  # noqa: F401
from emcs.cli._app import app


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]

"""The ``emcs`` command line: a thin Typer layer that parses and delegates.

One module per capability registers its commands on the shared app:
``tcs`` (encode, decode, info, demo, train tcs), ``simulate``, ``compare``,
``dlss`` (subsample, supersample, train dlss) and ``sim`` (sim-recon,
resolution, train sim).
"""

from __future__ import annotations

from emcs.cli import compare, dlss, sim, simulate, tcs, tcs_train  # noqa: F401  (register commands)
from emcs.cli._app import app


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]

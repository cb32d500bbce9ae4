"""The ``emcs`` command line: a thin Typer layer that parses and delegates.

One module per capability registers its commands on the shared app:
``tcs`` (encode, decode), ``info``, ``watch``, ``models``, ``demo``, ``train`` (train tcs|dlss|sim), ``simulate``,
``compare``, ``dlss`` (subsample, supersample) and ``sim`` (sim-recon,
resolution).
"""

from __future__ import annotations

from emcs.cli import (  # noqa: F401  (register commands)
    compare,
    demo,
    dlss,
    info,
    models,
    sim,
    simulate,
    tcs,
    train,
    watch,
)
from emcs.cli._app import app

# the order of `emcs --help`: the main job first, then by capability
_HELP_ORDER = (
    "encode", "decode", "info", "watch", "models", "demo", "simulate", "compare",
    "subsample", "supersample", "sim-recon", "resolution",
)
app.registered_commands.sort(
    key=lambda c: _HELP_ORDER.index(c.name) if c.name in _HELP_ORDER else len(_HELP_ORDER)
)


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]

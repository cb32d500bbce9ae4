"""The ``emcs`` command line: a thin Typer layer that parses and delegates.

One module per capability registers its commands on the shared app:
``tcs`` (encode, decode), ``info``, ``watch``, ``models``, ``demo``, ``train`` (train tcs|dlss|sim), ``simulate``,
``compare``, ``dlss`` (subsample, supersample) and ``sim`` (sim-recon,
resolution).

Start-up is kept short (benchmarks/encode.md, "Start-up"): :func:`main` imports
only the module of the command it runs (``emcs encode`` imports
``emcs.cli.tcs``, not the nine others); ``emcs --help``, an unknown command
and shell completion import them all, as does ``from emcs.cli import app``.
"""

from __future__ import annotations

import importlib
import os
import sys

#: the module of emcs/cli that registers each command (``emcs NAME``), in the order of
#: ``emcs --help``: the main job first, then by capability
COMMAND_MODULES: dict[str, str] = {
    "encode": "tcs", "decode": "tcs", "info": "info", "watch": "watch", "models": "models",
    "demo": "demo", "simulate": "simulate", "compare": "compare", "subsample": "dlss",
    "supersample": "dlss", "sim-recon": "sim", "resolution": "sim", "train": "train",
}

#: commands that do no linear algebra: they start numpy's BLAS with one thread (unless the
#: user set OPENBLAS_NUM_THREADS), which saves OpenBLAS starting a thread per core when numpy
#: is imported (~40 ms of a 0.2 s ``emcs encode`` on 2 cores; benchmarks/encode.md)
NO_BLAS_COMMANDS = frozenset({"encode", "info", "watch"})


def load_commands(command: str | None = None):
    """The app with the module of ``command`` registered, or with every command (``None``,
    or a name that is no command: typer then lists them or suggests the nearest)."""
    from emcs.cli._app import app

    module = COMMAND_MODULES.get(command)
    for name in (module,) if module else dict.fromkeys(COMMAND_MODULES.values()):
        importlib.import_module(f"{__name__}.{name}")
    if module is None:
        order = list(COMMAND_MODULES)
        app.registered_commands.sort(
            key=lambda c: order.index(c.name) if c.name in order else len(order))
    return app


def __getattr__(name: str):
    if name == "app":  # the complete app (tests, documentation tools)
        return load_commands()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Console-script entry point."""
    args = sys.argv[1:]
    # the first word names the command unless it is an option of emcs itself (--version ...);
    # shell completion runs emcs without arguments
    command = args[0] if args and not args[0].startswith("-") else None
    if command in NO_BLAS_COMMANDS:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    load_commands(command)()


__all__ = ["COMMAND_MODULES", "NO_BLAS_COMMANDS", "app", "load_commands", "main"]

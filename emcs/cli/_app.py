"""The Typer application objects shared by all command modules.

Command modules (``emcs/cli/tcs.py``, ``simulate.py`` ...) import ``app`` and
``train_app`` from here and decorate their commands. Each command body only
parses options and delegates to the capability package; heavy modules (torch,
abtem) are imported inside the command function so ``emcs --help`` stays fast.
"""

from __future__ import annotations

import functools
import sys

import typer

from emcs.errors import EmcsError

#: library parameter names whose CLI option has another name (parameter -> flag);
#: options named like the parameter are found on the running command itself.
PARAM_FLAGS: dict[str, str] = {}


def flag_names(func) -> dict[str, str]:
    """Parameter name -> flag of a command function (``{"quantize": "--quantize"}``).

    Read from the function's Typer options (the longest of each option's
    names), completed by :data:`PARAM_FLAGS`.
    """
    import inspect

    from typer.models import OptionInfo

    flags = dict(PARAM_FLAGS)
    for name, p in inspect.signature(func).parameters.items():
        if isinstance(p.default, OptionInfo) and p.default.param_decls:
            flags.setdefault(name, max(p.default.param_decls, key=len))
    return flags


def _report_user_errors(func):
    """Turn an :class:`EmcsError` into one line on stderr and exit code 2."""

    flags = flag_names(func)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except EmcsError as exc:
            typer.echo(f"emcs: error: {exc.with_flags(flags)}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("emcs: interrupted", err=True)
            raise typer.Exit(130) from None
        except MemoryError:
            typer.echo(
                "emcs: error: out of memory; try a smaller --tile or fewer frames at once",
                err=True,
            )
            raise typer.Exit(2) from None

    return wrapper


class EmcsTyper(typer.Typer):
    """A Typer whose commands report :class:`EmcsError` as one clean line."""

    def command(self, *args, **kwargs):
        decorator = super().command(*args, **kwargs)

        def register(func):
            decorator(_report_user_errors(func))
            return func

        return register


app = EmcsTyper(
    name="emcs",
    help="Compress electron/optical microscopy movies with temporal compressive sensing "
    "and recover them, sparse-scan STEM and SIM images, with neural networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

train_app = EmcsTyper(
    name="train",
    help="Train or fine-tune the networks (TCS decoder, DLSS-STEM, VDL-SIM).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(train_app, name="train")


def version_callback(value: bool) -> None:
    if value:
        from emcs import __version__

        typer.echo(f"emcs {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """emcs command-line interface."""


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False

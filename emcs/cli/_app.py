"""The Typer application objects shared by all command modules.

Command modules (``emcs/cli/tcs.py``, ``simulate.py`` ...) import ``app`` and
``train_app`` from here and decorate their commands. Each command body only
parses options and delegates to the capability package; heavy modules (torch,
abtem) are imported inside the command function so ``emcs --help`` stays fast.
"""

from __future__ import annotations

import functools
import os
import re
import sys

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

from emcs.cli._coerce import plain_coercion
from emcs.errors import EmcsError

#: library parameter names whose CLI option has another name (parameter -> flag);
#: an option whose command-function argument is named like the parameter is found
#: on the command function itself (:func:`flag_names`).
PARAM_FLAGS: dict[str, str] = {}


def flag_names(func) -> dict[str, str]:
    """Parameter name -> flag of a command function (``{"quantize": "--quantize"}``).

    Read from the function's Typer options (the longest of each option's
    names), completed by :data:`PARAM_FLAGS`. (The click context is not
    current while a Typer command runs, so the flags are read from the
    function's signature.)
    """
    import inspect

    from typer.models import OptionInfo

    flags = dict(PARAM_FLAGS)
    for name, p in inspect.signature(func).parameters.items():
        if isinstance(p.default, OptionInfo) and p.default.param_decls:
            flags[name] = max(p.default.param_decls, key=len)
    return flags


#: environment variable: let an unexpected exception (a bug) show its traceback
DEBUG_ENV = "EMCS_DEBUG"
#: the hidden temporary name of an output being written (emcs.io.partial.partial_path)
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.\d+-[0-9a-f]+\.part(\.[^./]*)?$")


def _user_name(filename) -> str:
    """The output file the user named, for the temporary file it is being written to."""
    folder, base = os.path.split(os.fspath(filename))
    match = _PARTIAL.match(base)
    return os.path.join(folder, match["name"]) if match else os.fspath(filename)


_BOOL_WORDS = ("true", "false", "yes", "no", "1", "0")
_FLAG_HINT = " (boolean options are flags: write --force, not --force true)"


def _report_user_errors(func):
    """Turn an :class:`EmcsError` into one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except EmcsError as exc:
            hint = _FLAG_HINT if exc.path in _BOOL_WORDS and exc.message == "no such file" else ""
            typer.echo(f"emcs: error: {exc.with_flags(flag_names(func))}{hint}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("emcs: interrupted", err=True)
            raise typer.Exit(130) from None
        except OSError as exc:  # disk full, permission denied ... on a file the checks let through
            where = f"{_user_name(exc.filename)}: " if exc.filename else ""
            typer.echo(f"emcs: error: {where}{exc.strerror or exc}", err=True)
            raise typer.Exit(2) from None
        except MemoryError:
            typer.echo(
                "emcs: error: out of memory; try a smaller --tile or fewer frames at once",
                err=True,
            )
            raise typer.Exit(2) from None
        except Exception as exc:
            if type(exc).__module__.startswith(("typer", "click")) or os.environ.get(DEBUG_ENV):
                raise  # typer's own exits; EMCS_DEBUG=1 shows the traceback of a bug
            typer.echo(f"emcs: error: unexpected {type(exc).__name__}: {exc} (a bug in emcs: "
                       f"rerun with {DEBUG_ENV}=1 for the traceback and report it)", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _plain_metavars(params) -> None:
    """Help shows flags without a value type and arguments as ``NAME...`` (not ``<bool>``, ``{name}``)."""
    for param in params:
        if param.param_type_name == "option" and getattr(param, "is_flag", False) \
                and param.metavar is None:
            param.metavar = ""
        elif isinstance(param, TyperArgument) and param.metavar is None:
            param.metavar = param.name.upper()


def _usage_piece(param) -> str:
    name = param.metavar or param.name.upper()
    if param.nargs != 1 and not name.endswith("..."):
        name += "..."
    return name if param.required else f"[{name}]"


def _prepared(params) -> list:
    """A command's parameters with plain metavars and coercion without pydantic."""
    _plain_metavars(params)
    plain_coercion(params)
    return params


class EmcsCommand(TyperCommand):
    """A command whose help shows boolean options as flags and arguments in the usual form."""

    def get_params(self, ctx) -> list:
        return _prepared(super().get_params(ctx))

    def format_help(self, ctx, formatter) -> None:
        """Help drawn with rich (typer's panels) on a terminal, as plain text (click's, the
        same words) in a pipe or a file: loading typer's rich formatting takes 0.15 s."""
        if stdout_is_terminal():
            return super().format_help(ctx, formatter)
        mode, self.rich_markup_mode = self.rich_markup_mode, None
        try:
            return super().format_help(ctx, formatter)
        finally:
            self.rich_markup_mode = mode

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        return pieces + [_usage_piece(p) for p in self.get_params(ctx)
                         if isinstance(p, TyperArgument)]


class EmcsGroup(TyperGroup):
    """The command groups (``emcs``, ``emcs train``), with :class:`EmcsCommand`'s help style
    (drawn with rich everywhere: click's plain list of commands cuts their summaries short)."""

    def get_params(self, ctx) -> list:
        return _prepared(super().get_params(ctx))


class EmcsTyper(typer.Typer):
    """A Typer whose commands report :class:`EmcsError` as one clean line."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, cls=EmcsGroup, **kwargs)

    def command(self, *args, **kwargs):
        kwargs.setdefault("cls", EmcsCommand)
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
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

train_app = EmcsTyper(
    name="train",
    help="Train or fine-tune the networks (TCS decoder, DLSS-STEM, VDL-SIM).",
    no_args_is_help=True,
    add_completion=False,
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
    return _is_terminal(sys.stderr)


def stdout_is_terminal() -> bool:
    return _is_terminal(sys.stdout)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False

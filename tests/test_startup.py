"""`emcs encode` starts fast (issue 16): what it loads, not how long it takes.

The timings are in benchmarks/encode.md ("Start-up"); here are the causes held:
``emcs encode`` imports only its own command module, neither pydantic (typer's
coercion of plain values is done in :mod:`emcs.cli._coerce`, with typer's own
results) nor rich off a terminal (plain help and summary lines; no progress bar).
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer.main
from typer.testing import CliRunner

import emcs.cli as cli
from emcs.cli import COMMAND_MODULES, _app, app

#: what `emcs encode` leaves unloaded: heavy for a start-up (~0.1 s each)
NOT_FOR_ENCODE = ("pydantic", "pydantic_core", "rich", "typer.rich_utils")
#: the command modules other than emcs.cli.tcs (encode's)
OTHER_COMMANDS = sorted({f"emcs.cli.{m}" for m in COMMAND_MODULES.values()} - {"emcs.cli.tcs"})


def _loaded(modules, names) -> list[str]:
    return sorted(m for m in modules if m in names or m.split(".")[0] in names)


def test_encode_help_loads_only_the_encode_command(tmp_path, cli_subprocess):
    run, loaded = cli_subprocess("encode", "--help", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "Usage: emcs encode [OPTIONS]" in run.stdout and "--quantize" in run.stdout
    assert "╭" not in run.stdout  # plain help in a pipe
    assert not _loaded(loaded, NOT_FOR_ENCODE + ("numpy",))
    assert not _loaded(loaded, OTHER_COMMANDS)


@pytest.mark.parametrize("quiet", [True, False])
def test_an_encode_loads_neither_pydantic_nor_rich(quiet, tmp_path, cli_subprocess):
    from emcs.io import write_stack

    write_stack(tmp_path / "tiny.tif", np.arange(4 * 32 * 32, dtype=np.uint16).reshape(4, 32, 32))
    run, loaded = cli_subprocess("encode", "tiny.tif", "-o", "out.npz", "-B", "2", "--seed", "1",
                                 "--density", "0.4", "--threads", "1", *["--quiet"] * quiet,
                                 cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "out.npz").is_file()
    assert run.stderr.startswith("" if quiet else "tiny.tif -> out.npz: 4 frames 32x32 uint16")
    assert not _loaded(loaded, NOT_FOR_ENCODE)
    assert not _loaded(loaded, OTHER_COMMANDS)


def test_off_a_terminal_the_reporter_writes_lines_as_they_are(capsys):
    from emcs.cli._common import Reporter

    rep = Reporter()
    rep.info("data[x].tif -> :smile: [bold]")  # rich would read markup and an emoji code
    rep.warn("short")
    rep.note("fallback")
    assert capsys.readouterr().err == "data[x].tif -> :smile: [bold]\nwarning: short\nnote: fallback\n"


def test_every_command_is_found_in_its_module():
    """main() imports COMMAND_MODULES[name] to run `emcs name`: the table must be right."""
    registering = {path.stem for path in (Path(cli.__file__).parent).glob("*.py")
                   if "app.command(" in path.read_text(encoding="utf-8")}
    assert registering == set(COMMAND_MODULES.values())  # a new command module is listed
    group = typer.main.get_command(app)
    assert set(group.commands) == set(COMMAND_MODULES)
    for info in app.registered_commands:
        assert COMMAND_MODULES[info.name] == info.callback.__module__.rsplit(".", 1)[1], info.name
    assert list(group.commands)[:len(app.registered_commands)] == [
        name for name in COMMAND_MODULES if name != "train"]  # the order of `emcs --help`


def test_help_is_drawn_with_rich_only_on_a_terminal(monkeypatch):
    runner = CliRunner()
    plain = runner.invoke(app, ["encode", "--help"])
    assert plain.exit_code == 0 and "╭" not in plain.stdout and "Options:" in plain.stdout
    monkeypatch.setattr(_app, "stdout_is_terminal", lambda: True)
    fancy = runner.invoke(app, ["encode", "--help"])
    assert fancy.exit_code == 0 and "╭─ Options" in fancy.stdout


# ------------------------------------------------------------------ coercion
VALUES = {
    "B": ["4", "+4", "04", "-0", "1_000", "1.0", "1.5", " 5", "x", "", "99999999999999999999999",
          "٣", 10, True],
    "threads": ["1", "0", "-3", "2", 1, 0],
    "density": ["0.5", "1e-3", ".5", "5.", "-0.0", "1E+2", "inf", "nan", "1e999", "1_0", " 1", "x",
                0.5, 1, True],
    "output": ["out.npz", "", "-", "ünïcode.npz", 5],
    "inputs": [("a.tif", "b.tif"), (), ["-"], ("a.tif", 3)],
    "force": [True, False, "yes", "x", None],
}


def _outcome(runtime, value, param, ctx):
    try:
        result = runtime.coerce(value, param=param, ctx=ctx)
    except Exception as exc:  # typer's BadParameter, with typer's message
        return type(exc).__name__, str(exc)
    if isinstance(result, float) and math.isnan(result):
        return "nan"
    return type(result).__name__, result


@pytest.mark.parametrize("name", sorted(VALUES))
def test_plain_coercion_gives_typers_results_and_errors(name):
    from typer._coercion import build_runtime_param

    command = typer.main.get_command(app).commands["encode"]
    ctx = command.make_context("encode", ["x.tif"])
    (param,) = [p for p in command.get_params(ctx) if p.name == name]
    ours = param.get_runtime_param()  # installed by EmcsCommand.get_params
    assert type(ours).__name__ == "_PlainRuntimeParam"
    typers = build_runtime_param(param.type_descriptor)
    for value in VALUES[name]:
        expected = _outcome(typers, value, param, ctx)
        assert _outcome(ours, value, param, ctx) == expected, value


@pytest.mark.parametrize("command, preset, expected", [
    ("encode", None, "1"), ("info", None, "1"), ("encode", "3", "3"), ("decode", None, None)])
def test_commands_without_linear_algebra_start_numpy_with_one_blas_thread(command, preset, expected,
                                                                           tree_env, tmp_path):
    """OpenBLAS starts a thread per core when numpy is imported, a cost at every start of
    `emcs encode` (which does no linear algebra); a user's own setting is kept."""
    env = {k: v for k, v in tree_env.items() if k != "OPENBLAS_NUM_THREADS"}
    if preset is not None:
        env["OPENBLAS_NUM_THREADS"] = preset
    code = ("import atexit, os, sys\n"
            "atexit.register(lambda: print(repr(os.environ.get('OPENBLAS_NUM_THREADS'))))\n"
            "from emcs.cli import main\n"
            "sys.argv = ['emcs', sys.argv[1], '--help']\n"
            "main()\n")
    run = subprocess.run([sys.executable, "-c", code, command], env=env, capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == repr(expected)

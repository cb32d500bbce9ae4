"""Small shared fixtures: synthetic movies written to tmp_path; the CLI run in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# runs ``emcs ARGS`` in-process (after an optional prelude), then prints the loaded module names
_CLI_PROBE = """
import json, sys
from emcs.cli import main
sys.argv = ["emcs", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    if exc.code:
        raise
print(json.dumps(sorted(sys.modules)))
"""


@pytest.fixture
def tree_env() -> dict:
    """The environment of a subprocess that imports this source tree's emcs."""
    tree = str(Path(__file__).resolve().parents[1])
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (tree, os.environ.get("PYTHONPATH")) if p))


@pytest.fixture
def cli_subprocess(tree_env):
    """``run(*args, cwd=.., prelude="") -> (CompletedProcess, loaded module names or None)``.

    Runs ``emcs ARGS`` in a fresh interpreter (this source tree's emcs) and
    returns the names in ``sys.modules`` afterwards, for start-up rules such
    as "encode loads no torch"; None when the command failed.
    """
    def run(*args, cwd, prelude: str = ""):
        proc = subprocess.run([sys.executable, "-c", prelude + _CLI_PROBE, *map(str, args)],
                              capture_output=True, text=True, timeout=120, cwd=cwd, env=tree_env)
        loaded = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
        return proc, loaded

    return run


@pytest.fixture
def write_movie(tmp_path):
    """``write_movie(name, T=.., H=.., W=.., dtype=.., pixel_size=..) -> (path, data)``."""
    from emcs.io import write_stack

    def make(name="movie.tif", T=12, H=24, W=20, dtype=np.uint16, pixel_size=None, seed=0):
        rng = np.random.default_rng(seed)
        dtype = np.dtype(dtype)
        if dtype.kind == "f":
            data = rng.random((T, H, W)).astype(dtype)
        else:
            info = np.iinfo(dtype)
            hi = min(int(info.max), 1000)
            data = rng.integers(max(int(info.min), -100), hi + 1, (T, H, W)).astype(dtype)
        path = tmp_path / name
        write_stack(path, data, pixel_size=pixel_size)
        return path, data

    return make

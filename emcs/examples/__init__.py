"""The example data shipped with emcs as package data (see ``README.md`` in this folder).

- ``au_movie.tif``: 40 frames of a simulated in-situ HRTEM movie of a gold
  nanoparticle, camera counts with shot noise (uint8, 0.3 Å pixels);
- ``au_movie_truth.tif``: its clean expected counts (float32).

The environment variable ``EMCS_EXAMPLES`` names a folder to take them from
instead (a stand-in movie for tests, or a regenerated one).

>>> example_path("au_movie.tif").name
'au_movie.tif'
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from emcs.errors import EmcsError
from emcs.extras import REINSTALL

#: environment variable: a folder used instead of the shipped examples
EXAMPLES_ENV = "EMCS_EXAMPLES"


def examples_dir() -> Path:
    """The folder holding the example files: ``$EMCS_EXAMPLES`` if set, else the shipped one."""
    env = os.environ.get(EXAMPLES_ENV)
    return Path(env) if env else Path(resources.files(__name__))


def example_path(name: str) -> Path:
    """Path of the example file ``name``; :class:`EmcsError` naming the fix when it is missing."""
    path = examples_dir() / name
    if not path.is_file():
        fix = f"put it there or unset {EXAMPLES_ENV}" if os.environ.get(EXAMPLES_ENV) else REINSTALL
        raise EmcsError(f"the example file is missing; {fix}", path)
    return path


__all__ = ["EXAMPLES_ENV", "example_path", "examples_dir"]

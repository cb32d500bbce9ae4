"""Small shared fixtures: synthetic movies written to tmp_path."""

from __future__ import annotations

import numpy as np
import pytest


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

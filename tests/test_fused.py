"""Fused bfloat16 denoisers (emcs.tcs.nets.fused, opt-in with EMCS_FUSE=1): same residual as the
eager bfloat16 copy, built only when asked and once a shape recurs, the fuser flag left as found.

Tolerances from measurements (session 18): on a denoiser with random weights the fused graphs
differ from the eager bfloat16 path by ~0.5 % of the residual's range (rounding only: a fused
kernel keeps its intermediate values in float32) and from float32 by as little as eager does.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from test_bf16 import fresh_checks  # noqa: E402, F401 (the fixture)

from emcs.tcs.nets import bf16, fused  # noqa: E402
from emcs.tcs.nets.unfold import Denoiser  # noqa: E402

pytestmark = pytest.mark.usefixtures("fresh_checks")  # every test starts with empty per-shape tables

_PROBE = """
import torch, test_fused
from emcs.tcs.nets import bf16
den, z = test_fused._denoiser()
with torch.inference_mode():
    for _ in range(bf16.FUSE_AFTER + 1):
        den(z, 2)
print(any(g is not None for g in den._fused.values()))
"""


@functools.cache
def _fuser_runs() -> bool:
    """Whether the fused graphs build and run here, tried in a child process: oneDNN Graph has
    crashed the process on graphs it mishandles (module notes of emcs.tcs.nets.fused)."""
    if not (bf16.available() and fused.available()):
        return False
    env = {**os.environ, "EMCS_FUSE": "1",
           "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")])}
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0 and done.stdout.strip().endswith("True")


needs_fuser = pytest.mark.skipif("not _fuser_runs()", reason="no oneDNN bfloat16 or Graph fuser that runs here")


def _denoiser(width: int = 16) -> tuple[bf16.BF16Denoiser, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    den = Denoiser(width, 3)
    with torch.no_grad():
        for p in den.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    z = torch.rand(6, 3, 40, 36, generator=gen).contiguous(memory_format=torch.channels_last)
    return bf16.BF16Denoiser.from_denoiser(den), z


@needs_fuser
def test_fused_denoiser_matches_eager_bfloat16(monkeypatch):
    monkeypatch.setenv("EMCS_FUSE", "1")
    den, z = _denoiser()
    flag = torch._C._jit_llga_enabled()
    with torch.inference_mode():
        eager = den._bf16(z, 2)
        want = den.reference(z, 2)
        outs = [den(z, 2) for _ in range(bf16.FUSE_AFTER + 2)]
    assert den._fused[(tuple(z.shape), 2)] is not None  # built on the FUSE_AFTER-th call, and right
    assert torch._C._jit_llga_enabled() == flag  # the process-wide fuser flag is restored
    got = outs[-1]
    span = float(want.abs().max())
    assert got.dtype == torch.float32 and got.shape == eager.shape
    assert float((got - eager).abs().max()) < 0.03 * span  # measured 0.005
    assert float((got - want).abs().max()) < 0.03 * span  # as eager bfloat16 is (0.0099)
    assert torch.equal(outs[-1], outs[-2])  # the graphs are deterministic


@needs_fuser
def test_fused_graphs_follow_the_measurement_count(monkeypatch):
    """The temporal mix reshapes by the number of measurements n: the same input shape with
    another n gets graphs of its own."""
    monkeypatch.setenv("EMCS_FUSE", "1")
    den, z = _denoiser()
    with torch.inference_mode():
        for n in (1, 2, 3):
            for _ in range(bf16.FUSE_AFTER + 1):
                got = den(z, n)
            span = float(den.reference(z, n).abs().max())
            assert float((got - den.reference(z, n)).abs().max()) < 0.03 * span
    assert {key[1] for key, graphs in den._fused.items() if graphs is not None} == {1, 2, 3}


@pytest.mark.skipif(not bf16.available(), reason="no oneDNN bfloat16 on this CPU")
def test_fusion_is_off_unless_asked(monkeypatch):
    monkeypatch.delenv("EMCS_FUSE", raising=False)
    den, z = _denoiser()
    with torch.inference_mode():
        for _ in range(bf16.FUSE_AFTER + 2):
            den(z, 2)
    assert not fused.enabled()
    assert all(graphs is None for graphs in den._fused.values())
    assert not bf16.unfused()  # not asked for, so nothing to report


@pytest.mark.skipif(not bf16.available(), reason="no oneDNN bfloat16 on this CPU")
def test_fusion_asked_for_but_unavailable_is_reported(monkeypatch):
    from emcs.tcs.nets.api import fallback_note

    monkeypatch.setenv("EMCS_FUSE", "1")
    monkeypatch.setattr(fused, "available", lambda: False)
    den, z = _denoiser()
    with torch.inference_mode():
        for _ in range(bf16.FUSE_AFTER + 1):
            got = den(z, 2)
        eager = den._bf16(z, 2)
    assert torch.equal(got, eager)  # the eager path, unchanged
    assert bf16.unfused() == [((tuple(z.shape), 2))]
    assert "EMCS_FUSE=1" in fallback_note() and "ran unfused" in fallback_note()

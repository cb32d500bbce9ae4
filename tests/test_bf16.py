"""tcs-unfold's bfloat16 CPU inference copy (emcs.tcs.nets.bf16): closeness, check, choice.

Tolerances come from measurements (session 17, benchmarks/tcs_speed.md): the bfloat16 copy
of the shipped network differed from float32 by 0.34-0.53 % of the output range at most on the
held-out movies; the inputs below by the figures noted beside the asserts.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from test_int8_fused import _measurement  # noqa: E402

from emcs.tcs.nets import bf16  # noqa: E402
from emcs.tcs.nets.api import decode_measurements, list_models, resolve_precision  # noqa: E402
from emcs.tcs.nets.unfold import Denoiser  # noqa: E402

needs_bf16 = pytest.mark.skipif(not bf16.available(), reason="no oneDNN bfloat16 on this CPU")


def _models():
    return {m.name: m for m in list_models()}


@pytest.fixture
def fresh_checks(monkeypatch):
    """Empty per-shape tables for the test (the real ones are process-wide): the checks and the
    shapes left unfused (test_fused uses this fixture too)."""
    monkeypatch.setattr(bf16, "_CHECKED", {})
    monkeypatch.setattr(bf16, "_UNFUSED", [])


@needs_bf16
def test_bf16_denoiser_is_close_to_float32():
    torch.manual_seed(0)
    den = Denoiser(16, 3)
    with torch.no_grad():
        for p in den.parameters():
            p.copy_(torch.randn(p.shape) * 0.2)
        z = torch.rand(6, 3, 40, 36)
        want = den(z, 2)
        got = bf16.BF16Denoiser.from_denoiser(den)._bf16(z, 2)
    assert got.dtype == torch.float32 and got.shape == want.shape
    span = float(want.abs().max())
    assert float((got - want).abs().max()) < 0.03 * span  # measured 0.0099 (8-bit mantissas)


@needs_bf16
def test_bf16_decode_is_close_to_float32(fresh_checks):
    y, masks = _measurement(8, (96, 80))
    info = _models()["tcs-unfold"]
    ref = decode_measurements(y, masks, info, device="cpu", precision="float32")
    got = decode_measurements(y, masks, info, device="cpu", precision="bfloat16")
    span = ref.max() - ref.min()
    assert np.abs(got - ref).max() < 0.02 * span  # measured 0.0069
    assert np.sqrt(np.mean((got - ref) ** 2)) < 0.004 * span  # measured 0.0012
    assert not bf16.fallbacks() and bf16._CHECKED  # checked, and right


@needs_bf16
def test_a_wrong_bf16_denoiser_falls_back_to_float32_for_that_shape(fresh_checks, monkeypatch):
    y, masks = _measurement(5, (40, 36))
    info = _models()["tcs-unfold"]
    ref = decode_measurements(y, masks, info, device="cpu", precision="float32")
    calls = []
    real = bf16.BF16Denoiser._bf16
    monkeypatch.setattr(bf16.BF16Denoiser, "_bf16", lambda self, z, n: calls.append(1) or real(self, z, n) * 3)
    got = decode_measurements(y, masks, info, device="cpu", precision="bfloat16")
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * float(np.abs(ref).max()))
    assert bf16.fallbacks() == [(10, 3, 40, 36)]
    assert len(calls) == 1  # once found wrong, that shape no longer runs in bfloat16
    from emcs.tcs.nets.api import fallback_note

    assert "bfloat16 denoisers gave wrong results" in fallback_note()


def test_auto_precision_on_the_cpu(monkeypatch):
    cpu = torch.device("cpu")
    models = _models()
    monkeypatch.setattr(bf16, "native", lambda: True)
    want = "bfloat16" if bf16.available() else None
    if want:
        assert resolve_precision("auto", models["tcs-unfold"], cpu) == "bfloat16"
    monkeypatch.setattr(bf16, "native", lambda: False)  # emulated bfloat16 is slower: not chosen
    assert resolve_precision("auto", models["tcs-unfold"], cpu) in ("int8", "float32")
    # other architectures never get the copy
    assert resolve_precision("auto", models["tcs-tcsdl"], cpu) == "float32"
    assert resolve_precision("bfloat16", models["tcs-unfold"], cpu) == "bfloat16"

"""tcs-unfold's bfloat16 CPU inference copy (emcs.tcs.nets.bf16): closeness, check, choice.

Tolerances come from measurements (sessions 17 and 19, benchmarks/tcs_speed.md): the bfloat16
copy of the shipped network (session 19: the last stage with a float32 stream) differed from
float32 by 0.33-0.71 % of the output range at most on the held-out movies; the inputs below by
the figures noted beside the asserts.
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
    """An empty table of checked shapes for the test (the real one is process-wide)."""
    monkeypatch.setattr(bf16, "_CHECKED", {})


def _random_denoiser(seed: int, width: int, scale: float) -> Denoiser:
    """A denoiser with random weights (``torch.manual_seed(seed)`` first: the caller's next draws follow)."""
    torch.manual_seed(seed)
    den = Denoiser(width, 3)
    with torch.no_grad():
        for p in den.parameters():
            p.copy_(torch.randn(p.shape) * scale)
    return den


@needs_bf16
def test_bf16_denoiser_is_close_to_float32():
    den = _random_denoiser(0, 16, 0.2)
    with torch.no_grad():
        z = torch.rand(6, 3, 40, 36)
        want = den(z, 2)
        got = bf16.BF16Denoiser.from_denoiser(den)._bf16(z, 2)
    assert got.dtype == torch.float32 and got.shape == want.shape
    span = float(want.abs().max())
    assert float((got - want).abs().max()) < 0.03 * span  # measured 0.0099 (8-bit mantissas)


@needs_bf16
def test_add_into_is_bitwise_the_eager_bfloat16_add():
    gen = torch.Generator().manual_seed(1)
    acc, x = (torch.randn(3, 8, 17, 11, generator=gen).to(torch.bfloat16)
              .contiguous(memory_format=torch.channels_last) for _ in range(2))
    want = acc + x
    eye = torch.eye(8, dtype=torch.bfloat16).view(8, 8, 1, 1)
    got = bf16._add_into(acc, x, eye)
    assert got is acc and torch.equal(acc, want)


@needs_bf16
@pytest.mark.parametrize("frames", [1, 2, 5])
def test_bf16_temporal_mix_is_close_to_float32(frames):
    """The mix's oneDNN calls (context as a (B, 1) convolution, the temporal convolution summed into
    it, leaky and residual as identity convolutions) against the float32 module, B = 1 included."""
    den = _random_denoiser(2, 8, 0.3)
    with torch.no_grad():
        h = torch.randn(2 * frames, 8, 9, 7).contiguous(memory_format=torch.channels_last)
        want = den.mix[0](h, 2)
        fast = bf16.BF16Denoiser.from_denoiser(den)
        got = bf16._mix(fast.mix[0], h.to(torch.bfloat16), 2, fast.eye).float()
    assert got.shape == want.shape
    assert float((got - want).abs().max()) < 0.02 * float(want.abs().max())  # measured 0.0038-0.0047


@needs_bf16
def test_the_last_stage_keeps_a_float32_stream_and_is_closer_to_float32():
    den = _random_denoiser(3, 16, 0.2)
    with torch.no_grad():
        z = torch.rand(6, 3, 40, 36).contiguous(memory_format=torch.channels_last)
        want = den(z, 2)
        mixed = bf16.MixedDenoiser.from_denoiser(den)
        got = mixed._bf16(z, 2)
        full = bf16.BF16Denoiser.from_denoiser(den)._bf16(z, 2)
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert mixed.tail.weight.dtype == torch.float32 and mixed.head_weight.dtype == torch.float32
    err, err_full = (float((x - want).abs().max()) for x in (got, full))
    assert err < 0.01 * float(want.abs().max())  # measured 0.0031 of the range
    assert err < err_full  # measured 0.0031 against 0.0062 all in bfloat16


@needs_bf16
def test_the_last_stage_is_checked_apart_from_the_first_stages(fresh_checks, monkeypatch):
    y, masks = _measurement(5, (40, 36))
    info = _models()["tcs-unfold"]
    ref = decode_measurements(y, masks, info, device="cpu", precision="float32")
    real = bf16.MixedDenoiser._bf16
    monkeypatch.setattr(bf16.MixedDenoiser, "_bf16", lambda self, z, n: real(self, z, n) * 3)
    got = decode_measurements(y, masks, info, device="cpu", precision="bfloat16")
    assert bf16.fallbacks() == [(10, 3, 40, 36, "last")]  # the first stages' check passed
    span = ref.max() - ref.min()
    assert np.abs(got - ref).max() < 0.02 * span


@needs_bf16
def test_bf16_decode_is_close_to_float32(fresh_checks):
    y, masks = _measurement(8, (96, 80))
    info = _models()["tcs-unfold"]
    ref = decode_measurements(y, masks, info, device="cpu", precision="float32")
    got = decode_measurements(y, masks, info, device="cpu", precision="bfloat16")
    span = ref.max() - ref.min()
    assert np.abs(got - ref).max() < 0.02 * span  # measured 0.0102 (0.0069 with a float32 last stage)
    assert np.sqrt(np.mean((got - ref) ** 2)) < 0.004 * span  # measured 0.0023 (0.0012)
    assert not bf16.fallbacks() and bf16._CHECKED  # checked, and right


@needs_bf16
def test_a_wrong_bf16_denoiser_falls_back_to_float32_for_that_shape(fresh_checks, monkeypatch):
    y, masks = _measurement(5, (40, 36))
    info = _models()["tcs-unfold"]
    ref = decode_measurements(y, masks, info, device="cpu", precision="float32")
    calls = []
    real = bf16.BF16Denoiser._bf16
    monkeypatch.setattr(bf16.BF16Denoiser, "_bf16", lambda self, z, n: calls.append(1) or real(self, z, n) * 3)
    monkeypatch.setattr(bf16.MixedDenoiser, "_bf16", lambda self, z, n: self.reference(z, n))  # last: float32
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

"""tcs-unfold's CPU inference copy (emcs.tcs.nets.int8): fused head, int8 tails, self-test.

Every new path is compared with the float32 network. Tolerances come from measurements
(session 10, benchmarks/tcs_speed.md): the fused head convolution and the float last stage
gave bit-identical results (asserted here to float rounding, 1e-6 of the output's largest
value); the int8 decode of the inputs below differed from float32 by at most 1.06 % and
0.89 % of the output range (r.m.s. 0.15 % and 0.16 %); the mean correction of an int8
convolution cut its per-channel mean error from 7e-4 - 2.2e-3 to 1.4e-5 - 1.7e-5 of the
output range (three random convolutions).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from emcs.errors import EmcsError  # noqa: E402
from emcs.tcs.nets import int8  # noqa: E402
from emcs.tcs.nets.api import decode_measurements, list_models  # noqa: E402
from emcs.tcs.nets.unfold import LEAKY_SLOPE, Denoiser, UnfoldNet  # noqa: E402

needs_int8 = pytest.mark.skipif(not int8.available(), reason="no oneDNN int8 convolution")


@pytest.fixture
def fresh_self_test():
    """Run int8.available() anew inside the test and again after it (it is cached)."""
    int8.available.cache_clear()
    yield
    int8.available.cache_clear()


def _measurement(seed: int, shape: tuple[int, int]):
    rng = np.random.default_rng(seed)
    masks = rng.random((10, *shape)) > 0.5
    frames = rng.random((10, *shape)).astype(np.float32) * 0.5 + 0.25
    return (frames * masks).sum(0)[None], masks


def _unfold_model():
    return {m.name: m for m in list_models()}["tcs-unfold"]


@needs_int8
@pytest.mark.parametrize(("kernel", "stride", "padding"), [(6, 2, 2), (3, 1, 1)])
def test_fused_conv_leaky_equals_conv_then_leaky_relu(kernel, stride, padding):
    torch.manual_seed(0)
    x = torch.randn(4, 3, 30, 26).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(16, 3, kernel, kernel) * 0.2, torch.randn(16)
    want = F.leaky_relu(F.conv2d(x, w, b, stride=stride, padding=padding), LEAKY_SLOPE)
    got = int8.conv_leaky(x, w, b, stride=stride, padding=padding)
    assert got.shape == want.shape
    assert torch.allclose(got, want, rtol=0, atol=1e-6 * float(want.abs().max()))


@needs_int8
def test_fast_float_denoiser_equals_denoiser():
    torch.manual_seed(1)
    den = Denoiser(8)
    for p in den.parameters():  # the tail starts at zero: give every layer some weight
        torch.nn.init.normal_(p, std=0.2)
    fast = int8.FastDenoiser.from_denoiser(den, int8=False)
    z = torch.rand(2 * 5, 3, 20, 18)
    with torch.inference_mode():
        want, got = den(z, 2), fast(z, 2)
    assert torch.allclose(got, want, rtol=0, atol=1e-6 * float(want.abs().max()))


@needs_int8
def test_quantized_copy_has_int8_stages_but_the_last():
    net = UnfoldNet(stages=3, width=8)
    fast = int8.quantize_unfold(net)
    assert all(isinstance(d, int8.FastDenoiser) for d in fast.denoisers)
    for den in fast.denoisers[:-1]:
        convs = [*den.body, den.tail, *(mix.tconv for mix in den.mix)]
        assert all(isinstance(c, int8.Int8Conv2d) for c in convs)
        assert den.tail.mean_error is not None and den.body[0].mean_error is None
    last = fast.denoisers[-1]
    assert all(isinstance(c, torch.nn.Conv2d) for c in [*last.body, last.tail])
    assert not any(isinstance(m, int8.Int8Conv2d) for m in net.modules())  # the original is kept


@needs_int8
def test_int8_convolution_mean_correction_removes_the_weight_rounding_bias():
    torch.manual_seed(2)
    conv = torch.nn.Conv2d(32, 4, 3, padding=1)
    x = (torch.rand(4, 32, 40, 48) + torch.rand(1, 32, 1, 1) * 2).contiguous(
        memory_format=torch.channels_last)
    with torch.inference_mode():
        want = conv(x)
        plain, corrected = (int8.Int8Conv2d.from_conv(conv, correct_mean=c)(x) for c in (False, True))
    span = float(want.max() - want.min())

    def channel_bias(got):  # away from the zero-padded border, where the input mean differs
        return float((got - want)[..., 1:-1, 1:-1].mean((0, 2, 3)).abs().max())

    assert channel_bias(corrected) < 2e-4 * span  # measured 1.7e-5
    assert channel_bias(corrected) < 0.1 * channel_bias(plain)  # measured 0.008
    assert float((corrected - want).abs().max()) < 0.01 * span  # measured 0.0034


@needs_int8
def test_int8_decode_with_int8_tails_is_close_to_float32():
    y, masks = _measurement(8, (96, 80))
    info = _unfold_model()
    ref = decode_measurements(y, masks, info, device="cpu", precision="float32")
    q = decode_measurements(y, masks, info, device="cpu", precision="int8")
    span = ref.max() - ref.min()
    assert np.abs(q - ref).max() < 0.02 * span  # measured 0.0089
    assert np.sqrt(np.mean((q - ref) ** 2)) < 0.004 * span  # measured 0.0016


def _raise(*args, **kwargs):
    raise RuntimeError("simulated oneDNN failure")


@pytest.mark.parametrize(("name", "fake"), [
    ("conv_leaky", _raise),  # the fused head fails
    ("conv_leaky", lambda x, w, b, stride, padding: torch.zeros(1)),  # ... or is wrong
    ("quantize_activation", _raise),  # the int8 convolution fails
])
def test_failed_self_test_decodes_in_float32(monkeypatch, fresh_self_test, name, fake):
    from emcs.tcs.nets import bf16

    monkeypatch.setattr(bf16, "native", lambda: False)  # else auto is the bfloat16 copy
    monkeypatch.setattr(int8, name, fake)
    assert not int8.available()
    y, masks = _measurement(6, (40, 36))
    info = _unfold_model()
    auto = decode_measurements(y, masks, info, device="cpu")
    ref = decode_measurements(y, masks, info, device="cpu", precision="float32")
    assert np.array_equal(auto, ref)
    with pytest.raises(EmcsError, match="int8"):
        decode_measurements(y, masks, info, device="cpu", precision="int8")


@pytest.fixture
def fresh_checks(monkeypatch):
    """An empty per-geometry int8 check table for the test (the real one is process-wide)."""
    monkeypatch.setattr(int8, "_CHECKED", {})


def _conv(cin, cout, kernel, padding, seed=0):
    gen = torch.Generator().manual_seed(seed)
    conv = torch.nn.Conv2d(cin, cout, kernel, padding=padding)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * 0.1)
    return conv


@needs_int8
def test_a_wrong_int8_convolution_falls_back_to_float32_for_that_shape(fresh_checks, monkeypatch):
    conv = _conv(8, 8, (3, 1), (1, 0))
    q = int8.Int8Conv2d(conv.weight, conv.bias, (1, 0))
    x = (torch.rand(1, 8, 10, 300) - 0.3).contiguous(memory_format=torch.channels_last)
    right = q(x)  # the int8 kernel as this machine runs it
    assert int8.fallbacks() == [] or int8.fallbacks()[0][2] == tuple(x.shape)
    monkeypatch.setattr(int8, "_CHECKED", {})
    calls = []
    real = int8.Int8Conv2d._int8
    monkeypatch.setattr(int8.Int8Conv2d, "_int8", lambda self, x: calls.append(1) or real(self, x) * 1.5)
    with torch.no_grad():
        want = conv(x)
        got = q(x)  # int8 off by half of every value: caught, the float32 result returned
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        assert int8.fallbacks() == [((8, 8, 3, 1), (1, 0), (1, 8, 10, 300))]
        torch.testing.assert_close(q(x + 0.1), conv(x + 0.1), rtol=1e-5, atol=1e-6)
        assert len(calls) == 1  # once found wrong, that shape no longer runs int8 at all
        other = (torch.rand(1, 8, 4, 300) - 0.3).contiguous(memory_format=torch.channels_last)
        q(other)  # another shape is checked on its own
        assert len(int8.fallbacks()) == 2
    assert float((right - want).abs().max()) <= int8.INT8_TOLERANCE * float(want.abs().max())


@needs_int8
def test_a_constant_input_does_not_settle_the_int8_check(fresh_checks):
    conv = _conv(8, 8, 3, 1)
    q = int8.Int8Conv2d.from_conv(conv)
    q(torch.zeros(1, 8, 16, 16).contiguous(memory_format=torch.channels_last))
    assert int8._CHECKED == {}
    q((torch.rand(1, 8, 16, 16) - 0.3).contiguous(memory_format=torch.channels_last))
    assert list(int8._CHECKED.values()) == [True]


@needs_int8
def test_the_decode_says_when_int8_convolutions_ran_in_float32(fresh_checks, monkeypatch, tmp_path):
    from emcs.tcs.decode import decode_container
    from emcs.tcs.encode import encode_stack

    rng = np.random.default_rng(3)
    np.save(tmp_path / "s.npy", (rng.random((10, 48, 40)) * 200).astype(np.uint16))
    encode_stack(tmp_path / "s.npy", tmp_path / "m.npz", B=10, seed=1, force=True, threads=1)
    ref = decode_container(tmp_path / "m.npz", tmp_path / "f.npy", device="cpu", precision="float32",
                           static_blend="off")
    assert not any("int8" in n for n in ref["notes"])
    real = int8.Int8Conv2d._int8
    monkeypatch.setattr(int8.Int8Conv2d, "_int8", lambda self, x: real(self, x) + 1.0)
    res = decode_container(tmp_path / "m.npz", tmp_path / "q.npy", device="cpu", precision="int8",
                           static_blend="off")
    assert res["precision"] == "int8"
    assert any("ran in float32" in n for n in res["notes"]), res["notes"]
    f, q = np.load(tmp_path / "f.npy"), np.load(tmp_path / "q.npy")
    assert np.abs(q - f).max() < 1e-3 * (f.max() - f.min())  # every int8 convolution fell back

"""The fast inference path of tcs-unfold and the bounded-memory tiling it runs on.

The network's channels-last, in-place inference forward must compute what the
training formulation (a Conv3d over (n, C, B, H, W)) computes, with and
without autograd; tiling with a caller's output buffer, an input built tile by
tile and fitted tiles must give what plain tiling gives.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from emcs.nn.tiling import _starts, fitted_tile, tiled_apply  # noqa: E402
from emcs.tcs.nets.unfold import TemporalMix, UnfoldNet  # noqa: E402


def conv3d_mix(mix: TemporalMix, h, n: int):
    """TemporalMix as first written: Conv3d on the (n, C, B, H, W) view, NCHW features."""
    nb, c, hh, ww = h.shape
    v = h.view(n, nb // n, c, hh, ww).transpose(1, 2)
    t = mix.tconv(v).transpose(1, 2)
    m = mix.ctx(v.mean(2))[:, None]
    return h + F.leaky_relu(t + m, 0.1).reshape(nb, c, hh, ww)


@pytest.mark.parametrize("grad", [False, True])
def test_temporal_mix_equals_conv3d_formulation(grad):
    torch.manual_seed(0)
    mix = TemporalMix(8)
    h = torch.randn(2 * 5, 8, 6, 7)
    want = conv3d_mix(mix, h, 2)
    with torch.set_grad_enabled(grad):
        got = mix(h.clone(), 2)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5)


def test_unfold_inference_equals_training_forward():
    """The in-place (no-grad) forward gives the autograd forward's output; gradients flow."""
    torch.manual_seed(1)
    net = UnfoldNet(stages=2, width=8)
    for p in net.parameters():  # the tail starts at zero: give every layer some weight
        torch.nn.init.normal_(p, std=0.1)
    y = torch.rand(2, 20, 18) * 3
    masks = (torch.rand(1, 5, 20, 18) > 0.5).float()
    with torch.inference_mode():
        fast = net(y, masks)
    slow = net(y, masks)
    assert torch.allclose(fast, slow, atol=1e-5)
    slow.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_fitted_tiles_cover_with_the_overlap():
    for length, tile, overlap in [(4096, 768, 48), (1024, 768, 48), (1000, 96, 16), (97, 48, 8)]:
        t = fitted_tile(length, tile, overlap)
        starts = _starts(length, t, overlap)
        assert t <= tile and len(starts) == len(_starts(length, tile, overlap))
        assert starts[-1] + t == length
        assert all(b - a <= t - overlap for a, b in zip(starts[:-1], starts[1:], strict=True))
    assert fitted_tile(4096, 768, 48) == 723


class _Blocks:
    """A tile source: the blocks of a tensor, counting the pixels handed out."""

    def __init__(self, x):
        self.x, self.shape, self.device, self.pixels = x, tuple(x.shape), x.device, 0

    def __getitem__(self, key):
        block = self.x[key].clone()
        self.pixels += block.shape[-2] * block.shape[-1]
        return block


def test_tiled_apply_with_tile_source_and_output_buffer():
    torch.manual_seed(2)
    x = torch.rand(2, 3, 100, 130)
    net = torch.nn.Conv2d(3, 2, 5, padding=2)
    want = tiled_apply(net, x, tile=48, overlap=16, batch=1)
    out = torch.full((2, 2, 100, 130), float("nan"))
    got = tiled_apply(net, _Blocks(x), tile=48, overlap=16, batch=1, out=out)
    assert got is out and torch.equal(got, want)
    zeros = torch.zeros(2, 2, 100, 130)  # a buffer that already holds zeros is used as it is
    assert torch.equal(tiled_apply(net, _Blocks(x), tile=48, overlap=16, batch=1, out=zeros, out_zeroed=True), want)
    small = torch.empty(2, 2, 100, 130)  # a frame within one tile runs whole, into the buffer
    assert tiled_apply(net, _Blocks(x), tile=256, out=small) is small
    assert torch.allclose(small, net(x).detach(), atol=1e-6)


def test_fitted_tiling_computes_less_and_agrees():
    torch.manual_seed(3)
    x = torch.rand(1, 1, 200, 200)
    net = torch.nn.Conv2d(1, 1, 5, padding=2)
    whole = net(x).detach()
    plain, fitted = _Blocks(x), _Blocks(x)
    a = tiled_apply(net, plain, tile=120, overlap=24, batch=1)
    b = tiled_apply(net, fitted, tile=120, overlap=24, batch=1, fit=True)
    assert fitted.pixels < plain.pixels
    assert torch.allclose(a, whole, atol=1e-5) and torch.allclose(b, whole, atol=1e-5)


def test_decode_input_blocks_match_the_full_input():
    from emcs.tcs.nets.api import _TileInputs

    rng = np.random.default_rng(0)
    y = rng.random((40, 50), dtype=np.float32) * 7
    masks = rng.random((4, 40, 50)) > 0.5
    full = np.concatenate([(y / 3.5)[None], masks.astype(np.float32)])[None]
    src = _TileInputs(y, 3.5, masks, torch.device("cpu"))
    assert src.shape == full.shape
    block = src[0:1, :, slice(5, 30), slice(10, 50)]
    assert np.array_equal(block.numpy(), full[:, :, 5:30, 10:50])


def test_head_as_strided_convolution_equals_unshuffle_then_conv():
    from emcs.tcs.nets.unfold import _head_weight

    torch.manual_seed(4)
    conv = torch.nn.Conv2d(12, 8, 3, padding=1)
    z = torch.randn(2, 3, 14, 10)
    want = conv(F.pixel_unshuffle(z, 2))
    got = F.conv2d(z, _head_weight(conv), conv.bias, stride=2, padding=2)
    assert torch.allclose(got, want, atol=1e-5)


int8 = pytest.importorskip("emcs.tcs.nets.int8")
needs_int8 = pytest.mark.skipif(not int8.available(), reason="no oneDNN int8 convolution")


@needs_int8
def test_int8_convolution_is_within_its_quantisation_step():
    torch.manual_seed(5)
    conv = torch.nn.Conv2d(16, 16, 3, padding=1)
    x = torch.randn(3, 16, 20, 24).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        want = conv(x)
        got = int8.Int8Conv2d.from_conv(conv)(x)
    err = (got - want).abs()
    assert got.shape == want.shape and err.max() < 0.03 * want.abs().max() and err.mean() < 0.005


@needs_int8
def test_int8_decode_is_close_to_float32(monkeypatch):
    """The CPU default where bfloat16 is not native (int8) against float32 on a small input
    with the shipped weights: within 2 % of the output range everywhere, 0.5 % r.m.s."""
    from emcs.errors import EmcsError
    from emcs.tcs.nets import bf16
    from emcs.tcs.nets.api import decode_measurements, list_models

    monkeypatch.setattr(bf16, "native", lambda: False)
    models = {m.name: m for m in list_models()}
    rng = np.random.default_rng(6)
    masks = rng.random((10, 64, 72)) > 0.5
    frames = rng.random((10, 64, 72)).astype(np.float32) * 0.5 + 0.25
    y = (frames * masks).sum(0)[None]
    ref = decode_measurements(y, masks, models["tcs-unfold"], device="cpu", precision="float32")
    q = decode_measurements(y, masks, models["tcs-unfold"], device="cpu", precision="int8")
    auto = decode_measurements(y, masks, models["tcs-unfold"], device="cpu")
    assert np.array_equal(auto, q)
    span = ref.max() - ref.min()
    assert np.abs(q - ref).max() < 0.02 * span
    assert np.sqrt(np.mean((q - ref) ** 2)) < 0.005 * span
    with pytest.raises(EmcsError, match="tcs-unfold models only"):
        decode_measurements(y, masks, models["tcs-tcsdl"], device="cpu", precision="int8")


def test_tiles_computed_side_by_side_blend_the_same():
    from emcs.nn.device import tile_workers

    torch.manual_seed(7)
    x = torch.rand(2, 3, 100, 130)
    net = torch.nn.Conv2d(3, 2, 5, padding=2)
    one = tiled_apply(net, x, tile=48, overlap=16, batch=1)
    threads = torch.get_num_threads()
    with tile_workers(torch.device("cpu")) as workers:
        assert workers == threads and torch.get_num_threads() == (1 if threads > 1 else threads)
        three = tiled_apply(net, _Blocks(x), tile=48, overlap=16, batch=1, workers=3)
    assert torch.get_num_threads() == threads
    assert torch.equal(one, three)

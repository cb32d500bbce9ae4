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

"""Shared network plumbing: verified weights + model cards, seamless tiling."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from emcs.errors import EmcsError
from emcs.nn.device import pick_device
from emcs.nn.tiling import pad_to_multiple, tiled_apply
from emcs.nn.weights import load_model, save_model


class Tiny(nn.Module):
    def __init__(self, width: int = 4):
        super().__init__()
        self.a = nn.Conv2d(1, width, 3, padding=1)
        self.b = nn.Conv2d(width, 1, 3, padding=1)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


BUILDERS = {"tiny": Tiny}


def _saved(tmp_path, width=4):
    torch.manual_seed(0)
    model = Tiny(width)
    card = save_model(tmp_path / "m.safetensors", model, {"architecture": "tiny", "config": {"width": width}})
    return model, card


def test_save_load_round_trip_fp16(tmp_path):
    model, card = _saved(tmp_path)
    assert card["parameters"] == sum(p.numel() for p in model.parameters())
    loaded, card2 = load_model(tmp_path / "m.safetensors", BUILDERS)
    assert card2["sha256"] == card["sha256"]
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=5e-3)  # fp16 storage


def test_missing_card_is_refused(tmp_path):
    _saved(tmp_path)
    (tmp_path / "m.json").unlink()
    with pytest.raises(EmcsError, match="model card m.json is missing"):
        load_model(tmp_path / "m.safetensors", BUILDERS)


def test_corrupt_weights_are_refused(tmp_path):
    _saved(tmp_path)
    raw = bytearray((tmp_path / "m.safetensors").read_bytes())
    raw[-5] ^= 0xFF
    (tmp_path / "m.safetensors").write_bytes(bytes(raw))
    with pytest.raises(EmcsError, match="checksum"):
        load_model(tmp_path / "m.safetensors", BUILDERS)


def test_card_that_does_not_fit_the_weights_is_refused(tmp_path):
    _saved(tmp_path, width=4)
    card = json.loads((tmp_path / "m.json").read_text())
    card["config"]["width"] = 8
    (tmp_path / "m.json").write_text(json.dumps(card))
    with pytest.raises(EmcsError, match="do not fit"):
        load_model(tmp_path / "m.safetensors", BUILDERS)


def test_unknown_architecture_is_refused(tmp_path):
    _saved(tmp_path)
    with pytest.raises(EmcsError, match="architecture 'tiny'"):
        load_model(tmp_path / "m.safetensors", {"other": Tiny})


def test_newer_card_format_is_refused(tmp_path):
    _saved(tmp_path)
    card = json.loads((tmp_path / "m.json").read_text())
    card["format_version"] = 99
    (tmp_path / "m.json").write_text(json.dumps(card))
    with pytest.raises(EmcsError, match="newer"):
        load_model(tmp_path / "m.safetensors", BUILDERS)


@pytest.mark.parametrize("shape", [(37, 200), (130, 129), (64, 64), (20, 300)])
def test_tiling_matches_untiled_network(shape):
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1)).eval()
    x = torch.rand(2, 2, *shape)
    with torch.no_grad():
        whole = net(x)
    tiled = tiled_apply(net, x, tile=64, overlap=16, batch=3)
    assert tiled.shape == whole.shape
    assert torch.allclose(tiled, whole, atol=1e-5)


@pytest.mark.parametrize("length", [100, 129, 300])
def test_even_tiling_layout(length):
    from emcs.nn.tiling import _starts

    starts = _starts(length, 48, 8, even=True)
    assert starts[0] == 0 and starts[-1] == length - 48
    gaps = np.diff(starts)
    assert gaps.max() <= 40 and gaps.max() - gaps.min() <= 1  # >= 8 px of overlap, evenly spread
    x = torch.rand(1, 3, length, 70)
    assert torch.allclose(tiled_apply(lambda t: 2 * t, x, tile=48, overlap=8, even=True, margin=0), 2 * x)


def test_tiling_with_upscaling():
    up = lambda t: torch.nn.functional.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731
    x = torch.rand(1, 1, 90, 70)
    assert torch.allclose(tiled_apply(up, x, tile=32, overlap=8, scale=2), up(x))


def test_pad_to_multiple():
    x = torch.rand(1, 1, 13, 17)
    y, (h, w) = pad_to_multiple(x, 8)
    assert y.shape[-2:] == (16, 24) and (h, w) == (13, 17)
    assert torch.equal(y[..., :13, :17], x)


def test_pick_device():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in ("cpu", "cuda")
    with pytest.raises(EmcsError):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(EmcsError, match="no CUDA"):
            pick_device("cuda")

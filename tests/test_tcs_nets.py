"""Tests of the neural TCS decoders (emcs.tcs.nets) and `emcs train tcs`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from emcs.errors import EmcsError
from emcs.nn.weights import load_model, models_dir
from emcs.tcs.masks import make_masks
from emcs.tcs.nets import BUILDERS
from emcs.tcs.nets.api import decode_measurements, find_model, list_models
from emcs.tcs.nets.tcsdl import TcsDlNet
from emcs.tcs.nets.unfold import UnfoldNet
from emcs.tcs.operator import forward

#: required mean PSNR gain of the shipped default model over GAP-TV (dB) on the fixed movies
MARGIN_DB = 2.0


def _psnr(x, ref):
    return 10 * np.log10((ref.max() - ref.min()) ** 2 / np.mean((x - ref) ** 2))


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def default_model():
    info = find_model(10, 0.5)
    assert info is not None, f"no shipped TCS model covers B=10 in {models_dir()}"
    return info


def test_networks_are_size_and_B_agnostic():
    net = UnfoldNet(stages=1, width=8)
    for B, (H, W) in [(3, (17, 30)), (12, (40, 21))]:
        C = torch.from_numpy(make_masks(1, B, H, W).astype(np.float32))
        assert net(torch.rand(2, H, W), C[None]).shape == (2, B, H, W)
    tiny = TcsDlNet(b_max=8, cnn_width=0.125, rnn_width=0.25, window=4)
    C = torch.from_numpy(make_masks(2, 5, 19, 26).astype(np.float32))
    assert tiny(torch.rand(1, 19, 26), C[None]).shape == (1, 5, 19, 26)


def _movie(B, size=64, seed=11, dose=100.0, kind="cells"):
    from emcs.simulate import sample_movie
    from emcs.simulate.clips import shot_noise

    rng = np.random.default_rng(seed)
    clean = sample_movie(rng, B, (size, size), (kind,))  # "cells" is kept out of training
    noisy = shot_noise(rng, clean, dose)
    masks = make_masks(1234, B, size, size, 0.5)
    return clean, forward(noisy, masks)[None].astype(np.float32), masks


def test_shipped_default_model_beats_gap_tv(default_model):
    from emcs.tcs.gaptv import gap_tv

    assert default_model.card["architecture"] == "tcs-unfold-v1"
    gains = []
    for kind in ("cells", "fibres", "lattice"):  # fixed movies, data seeds never used in training
        clean, y, masks = _movie(10, seed=11, kind=kind)
        net = decode_measurements(y, masks, default_model, device="cpu")[0]
        tv = gap_tv(y, masks)[0]
        assert net.shape == clean.shape and net.dtype == np.float32
        gains.append(_psnr(net, clean) - _psnr(tv, clean))
    assert min(gains) > 0.5 and np.mean(gains) > MARGIN_DB, gains


def test_tiled_decode_matches_untiled(default_model):
    clean, y, masks = _movie(10, size=160, seed=5)
    whole = decode_measurements(y, masks, default_model, device="cpu", tile=512, precision="float32")
    calls = []
    tiled = decode_measurements(y, masks, default_model, device="cpu", tile=96,  # the shipped overlap
                                progress=calls.append, precision="float32")
    assert calls == [1]
    diff = np.abs(whole - tiled)
    assert diff.mean() < 2e-3 * clean.mean() + 1e-4
    assert _psnr(tiled, whole) > 60  # seams ~1e-4 of the range r.m.s. (benchmarks/tcs_speed.md)


def test_odd_sized_frames_and_tiles_decode_to_their_last_row_and_column(default_model):
    """The row / column added to reach even sizes is a consistent copy of the last one: no bright edge."""
    clean, y, masks = _movie(10, size=81, seed=6)
    for tile in (4096, 60):  # the whole odd frame; 81 px in odd 53-px tiles (tile 60, overlap 24)
        x = decode_measurements(y, masks, default_model, device="cpu", tile=tile, precision="float32")[0]
        err = np.abs(x - clean)
        inner = err[:, 8:-8, 8:-8].mean()
        for edge in (err[:, -1], err[:, :, -1], err[:, -2], err[:, :, -2]):
            assert edge.mean() < 2 * inner, (tile, edge.mean(), inner)


def test_self_ensemble_averages_transformed_decodes(default_model):
    from emcs.nn.ensemble import dihedral

    clean, y, masks = _movie(10, size=40, seed=8)
    for t in range(8):  # each transform is undone exactly
        np.testing.assert_array_equal(dihedral(dihedral(clean, t), t, inverse=True), clean)
    calls = []
    ens = decode_measurements(y, masks, default_model, device="cpu", ensemble=2, progress=calls.append)
    flipped = decode_measurements(y[..., ::-1].copy(), masks[..., ::-1].copy(), default_model, device="cpu")
    plain = decode_measurements(y, masks, default_model, device="cpu")
    np.testing.assert_allclose(ens, (plain + flipped[..., ::-1]) / 2, rtol=1e-5, atol=1e-6)
    assert calls == [1] and _psnr(ens, clean) > _psnr(plain, clean) - 0.2
    with pytest.raises(EmcsError, match="ensemble"):
        decode_measurements(y, masks, default_model, device="cpu", ensemble=3)


def test_last_group_with_fewer_frames(default_model):
    clean, y, masks = _movie(10, size=48)
    part = forward(clean[:4], masks[:4])[None].astype(np.float32)
    out = decode_measurements(part, masks[:4], default_model, device="cpu")
    assert out.shape == (1, 4, 48, 48) and np.isfinite(out).all()


def test_find_model_coverage(default_model):
    assert find_model(64, 0.5) is None
    assert find_model(10, 0.95) is None
    assert find_model(20, 0.5).name == default_model.name
    names = [i.name for i in list_models()]
    assert "tcs-unfold" in names and "tcs-tcsdl" in names


def test_registry_chooses_decoders_by_name(default_model, monkeypatch):
    from emcs.tcs import decoders

    names = decoders.decoder_names()
    assert names[0] == "gap-tv" and {"tcs-unfold", "tcs-tcsdl"} <= set(names)
    assert decoders.select_decoder("auto", 10, 0.5) == (default_model.name, None)
    assert decoders.select_decoder("net", 10, 0.5)[0] == default_model.name
    assert decoders.select_decoder("gap-tv", 10, 0.5) == ("gap-tv", None)
    assert decoders.select_decoder("tcs-tcsdl", 10, 0.5) == ("tcs-tcsdl", None)
    name, why = decoders.select_decoder("auto", 64, 0.5)
    assert name == "gap-tv" and why == "no trained network for B=64 at mask density 0.50"
    name, why = decoders.select_decoder("auto", 1, 0.5, group="the groups of 1 frames (B=10)")
    assert name == "gap-tv" and "groups of 1 frames" in why
    # B 2..9 and densities beyond 0.35..0.65 (explicit hardware masks) get the any-mask network
    assert decoders.select_decoder("auto", 4, 0.5) == ("tcs-unfold-any", None)
    assert decoders.select_decoder("auto", 10, 0.25) == ("tcs-unfold-any", None)
    path = str(default_model.path)
    assert decoders.select_decoder("auto", 10, 0.5, model=path) == (path, None)
    assert decoders.select_decoder("auto", 4, 0.5, model="tcs-unfold")[0] == "gap-tv"
    with pytest.raises(EmcsError) as err:
        decoders.select_decoder("fista", 10, 0.5)
    assert err.value.param == "method" and "tcs-unfold" in str(err.value)
    with pytest.raises(EmcsError) as err:
        decoders.select_decoder("auto", 10, 0.5, model="tcs-nonexistent")
    assert err.value.param == "model"
    monkeypatch.setattr(decoders, "networks_unavailable", lambda: "the neural decoders are not available (test)")
    assert decoders.select_decoder("auto", 10, 0.5) == ("gap-tv", "the neural decoders are not available (test)")


def test_decoder_objects_take_measurements_and_operator(default_model):
    from emcs.tcs.decoders import GapTv, Network, get_decoder
    from emcs.tcs.gaptv import gap_tv
    from emcs.tcs.operator import TcsOperator

    clean, y, masks = _movie(10, size=32)
    op = TcsOperator.from_masks(masks)
    cpu = torch.device("cpu")
    net = get_decoder("tcs-unfold", device=cpu)
    assert isinstance(net, Network) and net.name == "tcs-unfold"
    np.testing.assert_array_equal(net(y, op), decode_measurements(y, masks, default_model, device="cpu"))
    by_path = get_decoder(str(default_model.path), device=cpu, ensemble=2)
    assert by_path.name == "tcs-unfold" and by_path(y, op).shape == (1, 10, 32, 32)
    tv = get_decoder("gap-tv", device=cpu, iters=5)
    assert isinstance(tv, GapTv)
    np.testing.assert_array_equal(tv(y, op), gap_tv(y, masks, iters=5))
    short = op.group(4)
    part = short.forward(clean[:4])[None].astype(np.float32)
    assert net(part, short).shape == (1, 4, 32, 32)


def test_one_network_map():
    from emcs.tcs.nets import ARCHITECTURES, architecture, build_network

    assert set(BUILDERS) == set(ARCHITECTURES.values())
    assert isinstance(build_network("unfold", stages=1, width=8), UnfoldNet)
    assert isinstance(build_network("tcs-tcsdl-v1", b_max=4, cnn_width=0.125, rnn_width=0.125), TcsDlNet)
    with pytest.raises(EmcsError) as err:
        architecture("resnet")
    assert err.value.param == "model"


def _copy_model(info, folder):
    dst = folder / info.path.name
    shutil.copy(info.path, dst)
    shutil.copy(info.path.with_suffix(".json"), dst.with_suffix(".json"))
    return dst


def test_corrupt_weights_are_refused(default_model, tmp_path):
    dst = _copy_model(default_model, tmp_path)
    data = bytearray(dst.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dst.write_bytes(bytes(data))
    info = find_model(10, 0.5, folder=tmp_path)
    with pytest.raises(EmcsError, match="checksum"):
        decode_measurements(np.zeros((1, 32, 32), np.float32), make_masks(1, 10, 32, 32), info)


def test_mismatched_card_is_refused(default_model, tmp_path):
    dst = _copy_model(default_model, tmp_path)
    card = json.loads(dst.with_suffix(".json").read_text())
    card["config"]["width"] = card["config"]["width"] + 8
    dst.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(EmcsError, match="do not fit"):
        load_model(dst, BUILDERS)
    card["architecture"] = "tcs-nonexistent"
    dst.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(EmcsError, match="architecture"):
        load_model(dst, BUILDERS)

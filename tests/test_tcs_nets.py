"""Tests of the neural TCS decoders (emcs.tcs.nets) and `emcs train tcs`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from emcs.cli import app
from emcs.errors import EmcsError
from emcs.nn.weights import load_model
from emcs.tcs.masks import make_masks
from emcs.tcs.nets import BUILDERS
from emcs.tcs.nets.api import decode_measurements, find_model, list_models, models_dir
from emcs.tcs.nets.data import make_batch, standin_movie
from emcs.tcs.nets.tcsdl import TcsDlNet
from emcs.tcs.nets.train import model_loss
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


def _toy_problem(seed=3, B=4, size=32):
    rng = np.random.default_rng(seed)
    b = make_batch(rng, B, size, 2, dose_range=(1000.0, 1000.0), use_simulator=False)
    return tuple(torch.from_numpy(a) for a in (b.y, b.masks, b.target))


@pytest.mark.parametrize(
    "make_net, size, steps, factor",
    [
        (lambda: UnfoldNet(stages=2, width=8), 32, 150, 0.6),
        (lambda: TcsDlNet(b_max=4, cnn_width=0.125, rnn_width=0.125, window=4), 16, 20, 0.5),
    ],
    ids=["unfold", "tcsdl"],
)
def test_tiny_model_overfits_toy_movie(make_net, size, steps, factor):
    torch.manual_seed(0)
    net = make_net()
    y, m, t = _toy_problem(size=size)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        loss = model_loss(net, y, m, t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert min(losses[-5:]) < factor * losses[0]


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
    from emcs.tcs.nets.data import shot_noise

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
    whole = decode_measurements(y, masks, default_model, device="cpu", tile=512)
    calls = []
    tiled = decode_measurements(y, masks, default_model, device="cpu", tile=96, overlap=48,
                                progress=calls.append)
    assert calls == [1]
    diff = np.abs(whole - tiled)
    assert diff.mean() < 2e-3 * clean.mean() + 1e-4
    assert _psnr(tiled, whole) > 40


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
    name, why = decoders.select_decoder("auto", 4, 0.5, group="the short last group (4 frames of B=10)")
    assert name == "gap-tv" and "short last group" in why
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


def test_standin_movie_range():
    m = standin_movie(np.random.default_rng(0), 5, 32)
    assert m.shape == (5, 32, 32) and m.dtype == np.float32
    assert 0.0 <= m.min() and m.max() <= 1.0


def test_train_cli_runs_resumes_and_fine_tunes_on_a_folder(tmp_path):
    from emcs.io import write_stack

    runner = CliRunner()
    out = tmp_path / "tcs-tiny.safetensors"
    base = ["train", "tcs", "--model", "unfold", "--B", "4", "--patch", "32", "--batch", "2",
            "--width", "8", "--stages", "1", "--checkpoint-every", "2", "--device", "cpu", "--quiet"]
    res = runner.invoke(app, [*base, "--steps", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["steps"] == 2 and card["B_range"] == [4, 4]
    ckpt = tmp_path / ".tcs-tiny-train" / "checkpoint.pt"
    res = runner.invoke(app, [*base, "--steps", "3", "--out", str(out), "--resume", str(ckpt)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.with_suffix(".json").read_text())["training"]["steps"] == 3
    lines = (tmp_path / ".tcs-tiny-train" / "loss.csv").read_text().splitlines()
    assert lines[0].startswith("step") and len(lines) == 4
    movies = tmp_path / "movies"
    movies.mkdir()
    write_stack(movies / "m.tif", (np.random.default_rng(0).random((6, 40, 40)) * 1000).astype(np.uint16))
    out2 = tmp_path / "tcs-mine.safetensors"
    res = runner.invoke(app, [*base, "--steps", "1", "--out", str(out2), "--data", str(movies),
                              "--resume", str(out)])
    assert res.exit_code == 0, res.output
    card2 = json.loads(out2.with_suffix(".json").read_text())
    assert "user movies" in card2["training"]["data"]
    assert card2["training"]["fine_tuned_from"]["steps"] == 3  # the lineage of a fine-tune is kept
    assert card2["training"]["cpu_s"] >= 0


def test_quantized_training_measurements():
    from emcs.tcs.container import anscombe_codes, anscombe_values
    from emcs.tcs.nets.data import make_batch, quantize_counts

    y = np.arange(0, 3000, 3, dtype=np.float32)
    q = quantize_counts(y, 2.0)
    np.testing.assert_array_equal(q, anscombe_values(anscombe_codes(y, 2.0), 2.0))  # what a reader gets
    assert np.all(np.abs(q - y) <= np.sqrt(y + 0.375) + 0.5)
    kw = dict(density_range=(0.5, 0.5), dose_range=(200.0, 200.0), use_simulator=False)
    plain = make_batch(np.random.default_rng(5), 10, 32, 1, **kw)
    quant = make_batch(np.random.default_rng(5), 10, 32, 1, quantize_range=(2.0, 2.0), quantize_fraction=1.0, **kw)
    np.testing.assert_array_equal(plain.masks, quant.masks)  # same clip and masks, only the sums differ
    np.testing.assert_array_equal(plain.target, quant.target)
    rel = np.abs(quant.y - plain.y) / plain.y.mean()
    assert 0 < float(np.median(rel)) < 0.05
    assert len(np.unique(quant.y)) < 0.6 * len(np.unique(plain.y))  # fewer levels: the codes' lattice


def _train_tiny(out, *options):
    """`emcs train tcs` of a one-stage, width-8 unfold net on 32x32 patches, one clip per step."""
    return CliRunner().invoke(app, [
        "train", "tcs", "--model", "unfold", "--patch", "32", "--batch", "1", "--width", "8", "--stages", "1",
        "--device", "cpu", "--quiet", "--out", str(out), *options])


def test_train_cli_weighted_B_and_quantized_data_in_card(tmp_path):
    out = tmp_path / "tcs-q.safetensors"
    res = _train_tiny(out, "--B", "4,4,6", "--steps", "2", "--quantize-steps", "1,2")
    assert res.exit_code == 0, res.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["B_range"] == [4, 6] and card["B_trained"] == [4, 6]
    assert card["B_draw_weights"] == {"4": 2 / 3, "6": 1 / 3}
    assert "quantized as `emcs encode --quantize STEP`" in card["training"]["data"]


def test_train_cpu_time_budget_stops_the_run(tmp_path):
    out = tmp_path / "tcs-cpu.safetensors"
    res = _train_tiny(out, "--B", "4", "--steps", "100000", "--max-cpu-minutes", "0.02")
    assert res.exit_code == 0, res.output
    training = json.loads(out.with_suffix(".json").read_text())["training"]
    assert 1 <= training["steps"] < 100000 and training["cpu_s"] >= 1.2


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "resnet"], "--model"),
        (["--B", "ten"], "--B"),
        (["--data", "/nonexistent/folder"], "folder"),
        (["--resume", "/nonexistent/ckpt.pt"], "no such checkpoint"),
        (["--density", "0.7,0.2"], "--density"),
        (["--quantize-steps", "0,2"], "--quantize-steps"),
        (["--quantize-steps", "1,5"], "--quantize-steps"),
    ],
)
def test_train_cli_bad_input(tmp_path, args, message):
    res = CliRunner().invoke(
        app, ["train", "tcs", "--steps", "1", "--out", str(tmp_path / "m.safetensors"), *args]
    )
    assert res.exit_code == 2
    assert message in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_train_cli_refuses_a_folder_of_too_small_movies(tmp_path):
    from emcs.io import write_stack

    write_stack(tmp_path / "small.tif", np.zeros((3, 20, 20), np.uint8))
    res = CliRunner().invoke(app, ["train", "tcs", "--B", "10", "--steps", "1", "--data", str(tmp_path),
                                   "--out", str(tmp_path / "m.safetensors")])
    assert res.exit_code == 2 and "no movie here has 10 frames" in res.output

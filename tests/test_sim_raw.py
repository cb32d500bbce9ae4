"""Tests of the raw-input SIM network: front-end, network, sim-recon default, training entry point,
and the out-of-focus light of the SIM simulation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from emcs.cli import app
from emcs.io import write_stack
from emcs.nn.weights import save_model
from emcs.sim.otf import Optics
from emcs.sim.rawnet import ARCHITECTURE, IN_CHANNELS, RawSIMNet, features
from emcs.sim.recon import raw_net_frame
from emcs.simulate import fluorescence as sm

runner = CliRunner()
OPTICS = Optics()


@pytest.fixture(scope="module")
def movie():
    return sm.simulate_movie(1, (64, 64), seed=31, counts=300, structure="tubules", out_of_focus=0.5)


@pytest.fixture(scope="module")
def tiny_net(tmp_path_factory):
    """An untrained raw-input network saved with its card, as emcs train writes it."""
    torch.manual_seed(0)
    net = RawSIMNet(channels=8, blocks=1).eval()
    folder = tmp_path_factory.mktemp("models")
    path = folder / "vdlsim-raw.safetensors"
    save_model(path, net, {"architecture": ARCHITECTURE, "config": {"channels": 8, "blocks": 1},
                           "name": "vdlsim-raw"})
    return net, path


@pytest.mark.parametrize("shape", [(40, 48), (38, 70)])
def test_network_keeps_any_even_size(shape):
    net = RawSIMNet(channels=8, blocks=1)
    with torch.no_grad():
        y = net(torch.zeros(1, IN_CHANNELS, *shape))
    assert tuple(y.shape) == (1, 1, *shape)


def test_front_end_is_wiener_on_the_2x_grid(movie):
    from emcs.sim.wiener import WienerSettings, estimate_parameters, reconstruct

    raw = movie.raw.reshape(3, 3, 64, 64).astype(np.float64)
    feats, patterns, details = features(raw, OPTICS)
    assert feats.shape == (IN_CHANNELS, 128, 128) and feats.dtype == np.float32
    assert len(details) == 3 and patterns == estimate_parameters(raw, OPTICS)[0]
    sr, _, _ = reconstruct(raw, OPTICS, patterns, WienerSettings(wiener=0.05))
    np.testing.assert_allclose(np.clip(feats[1], 0, None), sr, atol=1e-3 * float(sr.max()))


def test_output_independent_of_angle_order_and_tiling(movie, tiny_net):
    net, _ = tiny_net
    raw = movie.raw.reshape(3, 3, 64, 64).astype(np.float64)
    a, _, _ = raw_net_frame(net, raw, OPTICS)
    b, _, _ = raw_net_frame(net, raw[[2, 0, 1]], OPTICS)
    tiled, _, _ = raw_net_frame(net, raw, OPTICS, tile=32)
    scale = float(np.abs(a).max())
    assert a.shape == (128, 128)
    np.testing.assert_allclose(b, a, atol=1e-4 * scale)
    assert float(np.abs(tiled - a).mean()) < 0.01 * scale


def test_sim_recon_raw_defaults_to_the_installed_network(tmp_path, movie, tiny_net, monkeypatch):
    _, path = tiny_net
    monkeypatch.setenv("EMCS_MODELS", str(path.parent))
    src = tmp_path / "raw.tif"
    write_stack(src, movie.raw, pixel_size=800.0)
    r = runner.invoke(app, ["sim-recon", str(src), "-o", str(tmp_path / "sr.tif"), "--input", "raw", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["method"] == "net" and summary["weights"] == "vdlsim-raw"
    assert summary["shape_out"] == [1, 128, 128] and len(summary["parameters"][0]) == 3
    # the raw-input network refuses wide-field input
    r = runner.invoke(app, ["sim-recon", str(src), "-o", str(tmp_path / "wf.tif"), "--model", str(path)])
    assert r.exit_code == 2 and "--input must be 'raw'" in r.output
    r = runner.invoke(app, ["models", str(path), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["models"][0]["capability"] == "sim", r.output


def test_sim_recon_raw_notes_optics_outside_the_networks_training(tmp_path, movie):
    net = RawSIMNet(channels=8, blocks=1).eval()
    (tmp_path / "models").mkdir()
    path = tmp_path / "models" / "raw-525.safetensors"
    save_model(path, net, {"architecture": ARCHITECTURE, "config": {"channels": 8, "blocks": 1},
                           "name": "raw-525", "optics": OPTICS.to_dict()})
    src = tmp_path / "raw.tif"
    write_stack(src, movie.raw, pixel_size=800.0)  # 80 nm, as trained
    notes = {}
    for label, optics in (("as trained", []), ("600 nm, NA 1.0", ["--wavelength", "600", "--na", "1.0"])):
        r = runner.invoke(app, ["sim-recon", str(src), "-o", str(tmp_path / f"{len(notes)}.tif"),
                                "--input", "raw", "--model", str(path), "--json", *optics])
        assert r.exit_code == 0, r.output
        notes[label] = json.loads(r.stdout)["notes"]
    assert notes["as trained"] == []
    [note] = notes["600 nm, NA 1.0"]
    assert "raw-525 was trained at 525 nm, NA 1.4, 80 nm pixels" in note and "--method wiener" in note
    # the shipped raw network's card says where it was trained
    from emcs.nn.weights import read_card
    from emcs.sim.recon import default_weights

    assert Optics(**read_card(default_weights("raw"))["optics"]) == OPTICS

def test_sim_recon_raw_falls_back_to_wiener_without_the_network(tmp_path, movie, monkeypatch):
    from emcs.sim import recon
    from emcs.sim.files import default_method

    monkeypatch.setattr(recon, "DEFAULT_RAW_WEIGHTS", "no-such-network.safetensors")
    assert default_method("raw") == "wiener" and default_method("widefield") == "net"
    assert default_method("raw", "some.safetensors") == "net"


def test_train_sim_raw_smoke(tmp_path):
    out = tmp_path / "raw.safetensors"
    r = runner.invoke(app, ["train", "sim", "--input", "raw", "--out", str(out), "--steps", "2", "--pool", "2",
                            "--patch", "32", "--batch", "2", "--channels", "8", "--blocks", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["architecture"] == ARCHITECTURE and card["training"]["steps_done"] == 2
    assert card["training_data"]["held_out_family"] == "mesh"
    r = runner.invoke(app, ["train", "sim", "--input", "raw", "--out", str(tmp_path / "x.safetensors"),
                            "--steps", "1", "--hold-out", "cells"])
    assert r.exit_code == 2 and "--hold-out must be one of" in r.output


def test_train_sim_raw_at_the_users_optics(tmp_path):
    out = tmp_path / "raw600.safetensors"
    base = ["train", "sim", "--steps", "1", "--pool", "2", "--patch", "32", "--batch", "2", "--channels", "8",
            "--blocks", "1", "--quiet"]
    r = runner.invoke(app, [*base, "--input", "raw", "--out", str(out), "--wavelength", "600", "--na", "1.2",
                            "--pixel-size", "100"])
    assert r.exit_code == 0, r.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["optics"] == {"wavelength_nm": 600.0, "na": 1.2, "pixel_nm": 100.0}
    assert card["training_data"]["optics"].startswith("600 nm emission, NA 1.2, 100 nm camera pixels")
    for extra, words in ((["--input", "raw", "--na", "0"], "--na must be a positive number"),
                         (["--input", "raw", "--pixel-size", "400"], "--pixel-size 400 nm is too coarse"),
                         (["--na", "1.2"], "set the optics of --input raw training")):
        r = runner.invoke(app, [*base, "--out", str(tmp_path / "bad.safetensors"), *extra])
        assert r.exit_code == 2 and words in r.output, r.output

def test_out_of_focus_light_is_weakly_modulated():
    rng = np.random.default_rng(3)
    layer = sm.render_structure("mixed", (128, 128), OPTICS.pixel_nm / 2, rng)
    patterns = sm.random_patterns(rng, OPTICS)
    raw, wf = sm.out_of_focus_light(layer, OPTICS, patterns, mean_photons=50.0, defocus_um=1.0)
    assert raw.shape == (9, 64, 64) and wf.mean() == pytest.approx(50.0, rel=1e-6)
    across_phases = raw.reshape(3, 3, 64, 64).std(axis=1).mean()
    assert across_phases < 0.05 * raw.mean()  # in focus the pattern modulates by ~0.8 / sqrt(2)


def test_simulate_movie_without_haze_is_unchanged():
    a = sm.simulate_movie(1, (32, 32), seed=2, counts=100)
    b = sm.simulate_movie(1, (32, 32), seed=2, counts=100, out_of_focus=1.0)
    np.testing.assert_array_equal(a.truth, b.truth)
    assert b.raw.astype(float).mean() > a.raw.astype(float).mean() + 50
    assert a.info["out_of_focus"] is None and b.info["out_of_focus"]["mean_photons"] == 100.0

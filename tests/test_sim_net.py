"""Tests of the VDL-SIM network, its commands and its training entry point."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from emcs.cli import app
from emcs.compare.metrics import affine_fidelity
from emcs.io import open_stack, write_stack
from emcs.sim.otf import Optics
from emcs.sim.recon import default_weights, load_network, net_frame
from emcs.sim.reference import bilinear_up, sim_reference
from emcs.simulate import fluorescence as sm

runner = CliRunner()


@pytest.fixture(scope="module")
def movie():
    return sm.simulate_movie(2, (64, 64), seed=4242, counts=300, structure="filaments")


def test_shipped_network_beats_bilinear_widefield(movie):
    import torch

    torch.set_num_threads(1)
    net, card = load_network(default_weights())
    assert card["architecture"] == "vdlsim" and card["parameters"] > 50_000
    gains_psnr, gains_ssim = [], []
    for t in range(movie.widefield.shape[0]):
        wf = movie.widefield[t].astype(np.float32)
        ref = sim_reference(movie.truth[t], Optics())
        f_net = affine_fidelity(net_frame(net, wf), ref)
        f_bil = affine_fidelity(bilinear_up(wf), ref)
        gains_psnr.append(f_net["psnr"] - f_bil["psnr"])
        gains_ssim.append(f_net["ssim"] - f_bil["ssim"])
    assert np.mean(gains_psnr) > 3.0, gains_psnr
    assert np.mean(gains_ssim) > 0.2, gains_ssim


def test_network_any_size_and_tiling():
    import torch

    from emcs.sim.net import VDLSIM

    torch.manual_seed(0)
    net = VDLSIM(channels=8, blocks=1).eval()
    frame = np.random.default_rng(0).random((70, 90)).astype(np.float32)
    whole = net_frame(net, frame, tile=256)
    tiled = net_frame(net, frame, tile=40)
    assert whole.shape == (140, 180)
    assert np.abs(whole - tiled).max() < 0.05 * (np.abs(whole).max() + 1e-6)


def test_sim_recon_net_cli(tmp_path, movie):
    wf_path = tmp_path / "wf.tif"
    write_stack(wf_path, movie.widefield, pixel_size=800.0)
    out = tmp_path / "sr.mrc"
    r = runner.invoke(app, ["sim-recon", str(wf_path), "-o", str(out), "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["method"] == "net" and s["frames_out"] == 2
    with open_stack(out) as st:
        assert st.shape == (2, 128, 128) and st.pixel_size == pytest.approx(400.0)
    # raw input + net: the network runs on the wide-field sum of each 9-frame block
    raw_path = tmp_path / "raw.tif"
    write_stack(raw_path, movie.raw, pixel_size=800.0)
    out2 = tmp_path / "sr2.npy"
    r = runner.invoke(app, ["sim-recon", str(raw_path), "-o", str(out2), "--input", "raw", "--method", "net",
                            "--background", "rolling-ball", "--quiet"])
    assert r.exit_code == 0, r.output
    assert np.load(out2).shape == (2, 128, 128)

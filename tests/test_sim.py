"""Tests of emcs.sim: simulation, Wiener SIM, decorrelation, VDL-SIM network, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from typer.testing import CliRunner

from emcs.cli import app
from emcs.errors import EmcsError
from emcs.io import open_stack, read_stack, write_stack
from emcs.sim.decorrelation import decorrelation_resolution
from emcs.sim.otf import Optics
from emcs.sim.wiener import estimate_parameters, reconstruct, widefield_reference
from emcs.simulate import fluorescence as sm

runner = CliRunner()
OPTICS = Optics(525.0, 1.4, 80.0)


def _phase_error(a: float, b: float) -> float:
    return abs((a - b + np.pi) % (2 * np.pi) - np.pi)


def test_parameter_estimation_recovers_pattern():
    res = sm.simulate_movie(1, (128, 128), seed=7, counts=800, structure="filaments")
    raw = res.raw.reshape(3, 3, 128, 128).astype(np.float64)
    est, details = estimate_parameters(raw, OPTICS)
    for p, q, d in zip(est, res.patterns, details, strict=False):
        # same orientation as the simulated angle (k and -k describe the same pattern)
        if p.kx * q.kx + p.ky * q.ky < 0:
            pytest.fail("estimated wave vector points the opposite way")
        assert abs(p.ky - q.ky) < 0.01 and abs(p.kx - q.kx) < 0.01, (p, q)
        # phase of the pattern at the field centre (the corner-referenced phase carries
        # the tiny |k| error times the distance to the corner)
        yc, xc = 64 * 0.08, 64 * 0.08  # um
        pc = p.phase + 2 * np.pi * (p.ky * yc + p.kx * xc)
        qc = q.phase + 2 * np.pi * (q.ky * yc + q.kx * xc)
        assert _phase_error(pc, qc) < 0.1, (pc, qc)
        assert abs(p.modulation - q.modulation) < 0.15
        assert d["peak_contrast"] > 10


def _line_pairs(shape_sr, spacing_nm, px_sr=40.0):
    gt = np.zeros(shape_sr)
    ys = np.arange(0, shape_sr[0], 0.25)
    d = spacing_nm / px_sr
    # irregular positions: a periodic grating would itself look like a SIM pattern
    centres = np.array([14.3, 33.1, 55.7, 71.2, 94.6, 109.9])
    ys = np.arange(28, shape_sr[0] - 28, 0.25)
    for c in centres:
        for x in (c, c + d):
            sm.add_points(gt, ys, np.full_like(ys, x), np.full_like(ys, 0.25))
    # random filaments above and below give the spectrum the 2-D support that
    # pattern estimation needs (lines alone leave k undetermined along them)
    rng = np.random.default_rng(11)
    extra = np.zeros(shape_sr)
    sm._draw_curves(extra, rng, 30, (20, 60), 0.05)
    extra[24:shape_sr[0] - 24] = 0
    return gt + extra, centres, d


def test_wiener_resolves_line_pairs_below_widefield_limit():
    spacing = 140.0  # nm, below the 187.5 nm wide-field limit, above the ~104 nm SIM limit
    assert spacing < OPTICS.abbe_nm
    gt, centres, d = _line_pairs((128, 128), spacing)
    rng = np.random.default_rng(3)
    patterns = sm.random_patterns(rng, OPTICS)
    clean = sm.clean_raw(gt, OPTICS, patterns)
    scale = 1000 / sm.signal_level(sm.clean_widefield(gt, OPTICS))
    raw = sm.add_camera_noise(clean * scale, rng).reshape(3, 3, 64, 64).astype(np.float64)
    sr, _, _ = reconstruct(raw, OPTICS)
    wf = widefield_reference(raw)

    def dip(img):
        prof = img[32:96].mean(axis=0)
        ratios = []
        for c in centres[1:-1]:
            a, b = c - 0.5, c + d - 0.5  # truth x -> SR grid x
            pa = prof[int(round(a)) - 1:int(round(a)) + 2].max()
            pb = prof[int(round(b)) - 1:int(round(b)) + 2].max()
            mid = prof[int(round((a + b) / 2))]
            ratios.append(mid / min(pa, pb))
        return float(np.mean(ratios))

    assert dip(sr) < 0.85, dip(sr)
    assert dip(wf) > 0.95, dip(wf)


def test_decorrelation_blurred_is_worse_than_sharp():
    rng = np.random.default_rng(0)
    img = np.zeros((200, 200))
    sm._draw_curves(img, rng, 40, (40, 200), 0.02)
    sharp = gaussian_filter(img, 1.0) + rng.normal(0, 0.002, img.shape)
    blurred = gaussian_filter(img, 3.0) + rng.normal(0, 0.002, img.shape)
    r_sharp = decorrelation_resolution(sharp, 40)["resolution_nm"]
    r_blur = decorrelation_resolution(blurred, 40)["resolution_nm"]
    assert np.isfinite(r_sharp) and r_blur > 1.5 * r_sharp, (r_sharp, r_blur)


def test_decorrelation_of_simulated_widefield_near_abbe_limit():
    res = sm.simulate_movie(1, (128, 128), seed=2, counts=1000)
    r = decorrelation_resolution(res.widefield[0].astype(float), 80.0)["resolution_nm"]
    assert 180 < r < 300, r


def test_write_sim_data(tmp_path):
    out = tmp_path / "raw.tif"
    truth = tmp_path / "gt.tif"
    s = sm.write_sim_data(out, frames=2, size=(32, 48), seed=1, counts=300, truth=truth)
    raw, st = read_stack(out)
    assert raw.shape == (18, 32, 48) and raw.dtype == np.uint16
    assert st.pixel_size == pytest.approx(800.0)
    wf, wst = read_stack(tmp_path / "raw_widefield.tif")
    assert wf.shape == (2, 32, 48)
    gt, gst = read_stack(truth)
    assert gt.shape == (2, 64, 96) and gst.pixel_size == pytest.approx(400.0)
    assert len(s["patterns"]) == 3 and s["order"] == "angle-major"
    with pytest.raises(Exception, match="already exists"):
        sm.write_sim_data(out, frames=1, size=(32, 32))


def _raw_file(tmp_path, n_frames=18, size=64, name="raw.tif"):
    res = sm.simulate_movie(-(-n_frames // 9), (size, size), seed=5, counts=800)
    path = tmp_path / name
    write_stack(path, res.raw[:n_frames], pixel_size=800.0)
    return path, res


def test_sim_recon_wiener_cli(tmp_path):
    path, res = _raw_file(tmp_path)
    out = tmp_path / "sr.tif"
    r = runner.invoke(app, ["sim-recon", str(path), "-o", str(out), "--input", "raw",
                            "--method", "wiener", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["frames_out"] == 2 and summary["pixel_size_nm_out"] == 40.0
    est = summary["parameters"][0]
    for p, q in zip(est, res.patterns, strict=False):
        assert abs(p["k"] - q.k) < 0.02
    with open_stack(out) as s:
        assert s.shape == (2, 128, 128) and s.pixel_size == pytest.approx(400.0)
    # no overwrite without --force
    r = runner.invoke(app, ["sim-recon", str(path), "-o", str(out), "--input", "raw"])
    assert r.exit_code == 2 and "already exists" in r.output


@pytest.mark.parametrize("args,needle", [
    (["--angles", "3", "--phases", "3"], "not a multiple of angles x phases"),
    (["--order", "zigzag"], "--order must be one of"),
    (["--phases", "2"], "--phases must be at least 3"),
])
def test_sim_recon_frame_order_errors(tmp_path, args, needle):
    path, _ = _raw_file(tmp_path, n_frames=10 if "zigzag" not in args else 9)
    if "--phases" in args and args[args.index("--phases") + 1] == "2":
        path, _ = _raw_file(tmp_path, n_frames=9, name="raw9.tif")
    r = runner.invoke(app, ["sim-recon", str(path), "-o", str(tmp_path / "o.tif"), "--input", "raw",
                            "--method", "wiener", *args])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("emcs: error:") and needle in lines[0], r.output


def test_sim_recon_wiener_needs_raw(tmp_path):
    path, _ = _raw_file(tmp_path, n_frames=9)
    r = runner.invoke(app, ["sim-recon", str(path), "-o", str(tmp_path / "o.tif"), "--method", "wiener"])
    assert r.exit_code == 2 and "--input must be 'raw'" in r.output


def test_phase_major_order_matches_angle_major(tmp_path):
    res = sm.simulate_movie(1, (64, 64), seed=9, counts=800)
    a = tmp_path / "a.npy"
    p = tmp_path / "p.npy"
    np.save(a, res.raw)
    np.save(p, sm.reorder(res.raw, 3, 3, "phase-major"))
    outs = []
    for path, order in ((a, "angle-major"), (p, "phase-major")):
        out = tmp_path / f"{path.stem}_sr.npy"
        r = runner.invoke(app, ["sim-recon", str(path), "-o", str(out), "--input", "raw", "--order", order,
                                "--pixel-size", "80", "--quiet"])
        assert r.exit_code == 0, r.output
        outs.append(np.load(out))
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-3)


def test_resolution_cli(tmp_path):
    res = sm.simulate_movie(1, (96, 96), seed=4, counts=1000)
    path = tmp_path / "wf.tif"
    write_stack(path, res.widefield, pixel_size=800.0)
    r = runner.invoke(app, ["resolution", str(path), "--json"])
    assert r.exit_code == 0, r.output
    r_json = r.stdout
    v = json.loads(r.stdout)["resolution_nm"]
    assert 150 < v < 350
    np.save(tmp_path / "x.npy", res.widefield)
    r = runner.invoke(app, ["resolution", str(tmp_path / "x.npy")])
    assert r.exit_code == 2 and "--pixel-size must be given" in r.output
    from emcs.sim import resolution_file

    summary = resolution_file(path, frame=0)
    assert summary["frames"] == 1 and summary["resolution_nm"] == json.loads(r_json)["resolution_nm"]
    with pytest.raises(EmcsError) as err:
        resolution_file(path, frame=3)
    assert err.value.param == "frame"


@pytest.mark.parametrize("kwargs,param", [
    ({"input_kind": "movie"}, "input_kind"),
    ({"method": "wiener"}, "input_kind"),  # Wiener needs raw frames
    ({"na": 0}, "na"),
    ({"tile": 8}, "tile"),
    ({"input_kind": "raw", "phases": 2}, "phases"),
])
def test_sim_recon_file_errors_name_the_parameter(tmp_path, kwargs, param):
    from emcs.sim import sim_recon_file

    path, _ = _raw_file(tmp_path, n_frames=9, size=32)
    with pytest.raises(EmcsError) as err:
        sim_recon_file(path, tmp_path / "o.tif", **kwargs)
    assert err.value.param == param and err.value.message.startswith(param), err.value
    assert "--" not in err.value.message


def test_wrong_frame_order_is_flagged(tmp_path):
    res = sm.simulate_movie(1, (64, 64), seed=9, counts=800)
    p = tmp_path / "p.npy"
    np.save(p, sm.reorder(res.raw, 3, 3, "phase-major"))
    r = runner.invoke(app, ["sim-recon", str(p), "-o", str(tmp_path / "o.npy"), "--input", "raw",
                            "--pixel-size", "80"])
    assert r.exit_code == 0
    assert "frame order is probably wrong" in " ".join(r.output.split())

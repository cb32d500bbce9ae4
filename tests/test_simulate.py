"""emcs.simulate and `emcs simulate`: shapes, determinism, camera statistics, motion, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from emcs.cli import app
from emcs.errors import EmcsError
from emcs.io import open_stack
from emcs.simulate import KIND_HELP, KINDS, movie, sample_movie, sample_stem
from emcs.simulate.detector import apply_dose, counts_per_pixel, expected_counts

FAST_KINDS = ["fibres", "lattice", "cells", "haadf-crystal", "haadf-particle"]
ABTEM_KINDS = ["hrtem-particle", "hrtem-sintering"]


@pytest.fixture(autouse=True)
def _no_user_cache(tmp_path_factory, monkeypatch):
    """Tests never depend on (or write to) the user's simulation cache."""
    monkeypatch.setenv("EMCS_CACHE", str(tmp_path_factory.mktemp("emcs_cache")))


def _corr(a, b):
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _shift(a, b):
    from skimage.registration import phase_cross_correlation

    shift, _, _ = phase_cross_correlation(a, b, upsample_factor=10)
    return float(np.hypot(*shift))


def test_kind_names_are_stable():
    assert KINDS == ("hrtem-particle", "hrtem-sintering", "haadf-crystal", "haadf-particle", "fibres",
                     "lattice", "cells", "sim")
    assert set(KIND_HELP) == set(KINDS)


# ----------------------------------------------------------------------------- detector
def test_dose_convention_and_poisson_statistics():
    assert counts_per_pixel(100.0, 0.2) == pytest.approx(4.0)
    rng = np.random.default_rng(0)
    flat = np.full((20, 64, 64), 0.37, np.float32)
    for lam in (2.0, 20.0, 200.0):
        noisy = apply_dose(flat, lam, rng).astype(np.float64)
        assert noisy.mean() == pytest.approx(lam, rel=0.02)
        assert noisy.var() == pytest.approx(lam, rel=0.05)  # shot noise: variance = mean


def test_expected_counts_is_the_mean_of_the_camera():
    rng = np.random.default_rng(1)
    clean = rng.random((1, 32, 32)).astype(np.float32) + 0.1
    lam = expected_counts(clean, 30.0)
    assert lam.mean() == pytest.approx(30.0, rel=1e-5)
    np.testing.assert_allclose(lam / lam.mean(), clean / clean.mean(), rtol=1e-5)
    stack = np.stack([apply_dose(clean, 30.0, rng) for _ in range(400)]).astype(np.float64)
    assert np.abs(stack.mean(axis=0) - lam).max() < 6 * np.sqrt(lam.max() / 400)


def test_readout_noise_mtf_dtype_and_clipping():
    rng = np.random.default_rng(2)
    flat = np.ones((8, 64, 64), np.float32)
    plain = apply_dose(flat, 50.0, rng).astype(float)
    read = apply_dose(flat, 50.0, rng, readout_noise=5.0).astype(float)
    assert read.var() == pytest.approx(50.0 + 25.0, rel=0.08)
    blurred = apply_dose(flat, 50.0, rng, mtf_sigma=1.5).astype(float)
    assert blurred.var() < 0.3 * plain.var()  # the PSF correlates and smooths the shot noise
    assert apply_dose(flat, 5.0, rng).dtype == np.uint8
    assert apply_dose(flat, 1000.0, rng).dtype == np.uint16
    sat = apply_dose(flat, 1000.0, rng, dtype=np.uint8)
    assert sat.dtype == np.uint8 and sat.max() == 255  # a saturating camera clips


# ----------------------------------------------------------------------------- fast kinds
@pytest.mark.parametrize("kind", FAST_KINDS)
def test_fast_kind_shape_dtype_determinism_motion(kind):
    a = movie(kind, 6, (64, 72), seed=3, dose=50.0)
    b = movie(kind, 6, (64, 72), seed=3, dose=50.0)
    c = movie(kind, 6, (64, 72), seed=4, dose=50.0)
    assert a.noisy.shape == a.clean.shape == (6, 64, 72)
    assert a.noisy.dtype in (np.uint8, np.uint16)
    assert a.clean.dtype == np.float32
    assert a.pixel_size > 0 and a.meta["kind"] == kind
    np.testing.assert_array_equal(a.noisy, b.noisy)
    np.testing.assert_array_equal(a.clean, b.clean)
    assert not np.array_equal(a.clean, c.clean)
    # dose: mean counts per pixel = dose x pixel size^2
    assert a.clean.mean() == pytest.approx(50.0 * a.pixel_size**2, rel=1e-4)
    # motion between frames: present but small
    for t in range(5):
        r = _corr(a.clean[t], a.clean[t + 1])
        assert 0.85 < r < 0.99999, (kind, t, r)
    assert _shift(a.clean[0], a.clean[-1]) < 10


@pytest.mark.parametrize("kind", FAST_KINDS)
def test_noise_variance_tracks_the_mean(kind):
    res = movie(kind, 4, (64, 64), seed=5, counts=40.0)
    lam = res.clean.astype(np.float64)
    resid = res.noisy.astype(np.float64) - lam
    # Poisson: E[(n - lam)^2] = lam, in bright and in dark pixels
    assert (resid**2).mean() == pytest.approx(lam.mean(), rel=0.06)
    bright = lam > np.median(lam)
    ratio_b = (resid[bright] ** 2).mean() / lam[bright].mean()
    ratio_d = (resid[~bright] ** 2).mean() / lam[~bright].mean()
    assert 0.85 < ratio_b < 1.15 and 0.85 < ratio_d < 1.15


def test_clean_without_dose_is_normalised():
    res = movie("fibres", 3, (48, 48), seed=0)
    assert res.noisy is None
    assert res.clean.min() >= 0 and res.clean.max() <= 1.0 + 1e-6


def test_haadf_single_image_and_scan_drift():
    one = movie("haadf-crystal", 1, (64, 64), seed=2)
    assert one.clean.shape == (1, 64, 64)
    many = movie("haadf-crystal", 3, (64, 64), seed=2, speed=1.0)
    assert 0.5 < _corr(many.clean[0], many.clean[1]) < 0.99999


def test_bad_input_is_refused():
    with pytest.raises(EmcsError, match="unknown kind"):
        movie("nope", 2, (32, 32))
    with pytest.raises(EmcsError, match="size"):
        movie("lattice", 2, (4, 32))
    with pytest.raises(EmcsError, match="frames"):
        movie("lattice", 0, (32, 32))
    with pytest.raises(EmcsError, match="either"):
        movie("lattice", 2, (32, 32), dose=1.0, counts=1.0)
    with pytest.raises(EmcsError, match="does not take"):
        movie("lattice", 2, (32, 32), kv=300)
    with pytest.raises(EmcsError, match="detector angles"):
        movie("haadf-crystal", 1, (32, 32), inner=90, outer=60)


# ----------------------------------------------------------------------------- samplers
@pytest.mark.filterwarnings("ignore:emcs.simulate. no exit-wave cache")
@pytest.mark.parametrize("kind", ["fibres", "lattice", "cells", "haadf-crystal", "haadf-particle", "hrtem-particle"])
def test_sample_movie(kind):
    if kind.startswith("hrtem"):  # no cache here: falls back to a procedural kind, with a warning
        with pytest.warns(UserWarning, match="no exit-wave cache"):
            a = sample_movie(np.random.default_rng(7), 5, (48, 64), kinds=[kind])
    else:
        a = sample_movie(np.random.default_rng(7), 5, (48, 64), kinds=[kind])
    b = sample_movie(np.random.default_rng(7), 5, (48, 64), kinds=[kind])
    assert a.shape == (5, 48, 64) and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1 and a.std() > 0.02
    np.testing.assert_array_equal(a, b)
    assert 0.5 < _corr(a[0], a[1]) < 0.99999


def test_sample_movie_refuses_unknown_kinds():
    with pytest.raises(ValueError):
        sample_movie(np.random.default_rng(0), 2, (32, 32), kinds=["sim"])


def test_sample_stem():
    rng = np.random.default_rng(11)
    imgs = [sample_stem(rng, (96, 80)) for _ in range(4)]
    for img in imgs:
        assert img.shape == (96, 80) and img.dtype == np.float32
        assert img.min() >= 0 and img.max() <= 1 and img.std() > 0.01
    np.testing.assert_array_equal(sample_stem(np.random.default_rng(3), (64, 64)),
                                  sample_stem(np.random.default_rng(3), (64, 64)))


def _fake_cache(folder, n_spec=32, extent=41.0):
    """A tiny cache with random exit-wave spectra, in the real layout."""
    from emcs.simulate.cache import CACHE_VERSION

    rng = np.random.default_rng(0)
    shape = (1, 3, n_spec, n_spec)
    waves = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
    waves[..., n_spec // 2, n_spec // 2] += 50.0
    np.save(folder / "particle_waves.npy", waves)
    np.save(folder / "sinter_waves.npy", waves)
    files = ["particle_waves.npy", "sinter_waves.npy"]
    info = {"version": CACHE_VERSION, "files": files, "extent_A": extent, "kv": 300.0, "sampling_A": 0.16}
    (folder / "index.json").write_text(json.dumps(info))


def test_sample_movie_composes_cached_exit_waves(tmp_path, monkeypatch):
    from emcs.simulate.cache import cache_status, load_cache

    monkeypatch.setenv("EMCS_CACHE", str(tmp_path))  # an empty folder: no cache yet
    assert not cache_status()["ready"]
    _fake_cache(tmp_path)
    assert cache_status()["ready"] and load_cache() is not None
    for kind in ABTEM_KINDS:
        m = sample_movie(np.random.default_rng(1), 4, (40, 40), kinds=[kind])
        assert m.shape == (4, 40, 40) and m.dtype == np.float32
        assert 0 <= m.min() and m.max() <= 1 and m.std() > 0.02


# ----------------------------------------------------------------------------- abTEM kinds
@pytest.mark.slow
@pytest.mark.parametrize("kind", ABTEM_KINDS)
def test_abtem_kinds_small(kind):
    a = movie(kind, 3, (64, 64), seed=1, dose=200.0)
    b = movie(kind, 3, (64, 64), seed=1, dose=200.0)
    assert a.noisy.shape == (3, 64, 64) and a.noisy.dtype == np.uint8
    assert a.clean.dtype == np.float32 and a.pixel_size == pytest.approx(0.2)
    np.testing.assert_allclose(a.clean, b.clean, rtol=1e-4, atol=1e-4)  # same seed, same movie
    assert a.clean.mean() == pytest.approx(200.0 * 0.2**2, rel=1e-4)
    for t in range(2):
        assert 0.5 < _corr(a.clean[t], a.clean[t + 1]) < 0.99999
    assert a.meta["kv"] == 300.0


@pytest.mark.slow
def test_numpy_probe_matches_abtem_probe():
    from emcs.simulate.extras import configure_abtem
    from emcs.simulate.stem import _gaussian_blur_physical, _radial_profile, probe_profile

    abtem = configure_abtem()
    probe = abtem.Probe(energy=200e3, semiangle_cutoff=25.0, defocus=20.0, Cs=0.0, sampling=0.05,
                        extent=25.6, soft=False)
    inten = np.asarray(probe.build().intensity().compute().array, np.float64)
    ref = _radial_profile(_gaussian_blur_physical(inten, 0.05, 0.4), 0.05)
    ours = probe_profile(200.0, 25.0, 20.0, 0.0, 0.4)
    assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) < 1e-3


# ----------------------------------------------------------------------------- CLI
runner = CliRunner()


def test_cli_writes_counts_and_truth_with_pixel_size(tmp_path):
    out, truth = tmp_path / "m.tif", tmp_path / "m_truth.tif"
    res = runner.invoke(app, ["simulate", "lattice", "-o", str(out), "--truth", str(truth), "--frames", "4",
                              "--size", "48", "40", "--dose", "100", "--seed", "2", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["shape"] == [4, 48, 40] and summary["pixel_size_A"] == pytest.approx(0.3)
    with open_stack(out) as s, open_stack(truth) as t:
        assert s.shape == t.shape == (4, 48, 40)
        assert s.dtype.kind == "u" and t.dtype == np.float32
        assert s.pixel_size == pytest.approx(0.3) and t.pixel_size == pytest.approx(0.3)
        assert t.read().mean() == pytest.approx(100 * 0.3**2, rel=1e-4)
        assert s.read().mean() == pytest.approx(9.0, rel=0.05)
    # the Python API gives the same data for the same seed
    np.testing.assert_array_equal(open_stack(out).read(), movie("lattice", 4, (48, 40), seed=2, dose=100).noisy)


def test_cli_without_dose_writes_float_and_refuses_overwrite(tmp_path):
    out = tmp_path / "c.mrc"
    assert runner.invoke(app, ["simulate", "cells", "-o", str(out), "--frames", "2", "--size", "32", "32",
                               "--quiet"]).exit_code == 0
    with open_stack(out) as s:
        assert s.dtype == np.float32 and s.pixel_size == pytest.approx(40.0)
    res = runner.invoke(app, ["simulate", "cells", "-o", str(out), "--frames", "2", "--size", "32", "32"])
    assert res.exit_code == 2 and "already exists" in res.output
    assert runner.invoke(app, ["simulate", "cells", "-o", str(out), "--frames", "2", "--size", "32", "32",
                               "--force", "-q"]).exit_code == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["nope"], "unknown kind"),
        (["lattice", "--size", "8", "8"], "--size"),
        (["lattice", "--frames", "0"], "--frames"),
        (["lattice", "--dose", "1", "--counts", "2"], "not both"),
        (["lattice", "--dose", "-1"], "--dose"),
        (["fibres", "--kv", "300"], "does not apply"),
        (["lattice", "--mtf", "1"], "need a --dose"),
        (["haadf-crystal", "--inner", "90", "--outer", "50"], "detector angles"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(tmp_path, args, message):
    res = runner.invoke(app, ["simulate", *args, "-o", str(tmp_path / "x.tif")])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("emcs: error:") and message in lines[0], res.output
    assert not (tmp_path / "x.tif").exists()


def _sim_cli(tmp_path, name, *args):
    out = tmp_path / f"{name}.tif"
    res = runner.invoke(app, ["simulate", "sim", "-o", str(out), "--truth", str(tmp_path / f"{name}_gt.tif"),
                              "--size", "64", "64", "--counts", "2000", "--seed", "4", "--json", *args])
    assert res.exit_code == 0, res.output
    stacks = [open_stack(p).read().astype(np.float64)
              for p in (out, tmp_path / f"{name}_widefield.tif", tmp_path / f"{name}_gt.tif")]
    return (json.loads(res.stdout), *stacks)


def _phase_contrast(raw):
    """Mean over pixels of the std over the 3 phases / mean signal (offset and background removed)."""
    from emcs.simulate.fluorescence import CAMERA_OFFSET

    stack = (raw - CAMERA_OFFSET - 10.0).reshape(3, 3, *raw.shape[1:])
    return float(stack.std(axis=1).mean() / stack.mean())


def test_cli_sim_out_of_focus_adds_haze_and_lowers_the_modulation(tmp_path):
    plain, raw0, wf0, gt0 = _sim_cli(tmp_path, "plain")
    hazy, raw1, wf1, gt1 = _sim_cli(tmp_path, "hazy", "--out-of-focus", "0.5", "--defocus-um", "1.5")
    assert plain["out_of_focus"] is None
    assert hazy["out_of_focus"] == {"fraction": 0.5, "mean_photons": 1000.0, "defocus_um": 1.5}
    # the wide-field and raw means rise by the fraction x the photon level (S = --counts)
    assert wf1.mean() - wf0.mean() == pytest.approx(0.5 * 2000, rel=0.02)
    assert raw1.mean() - raw0.mean() == pytest.approx(0.5 * 2000, rel=0.02)
    # the haze is nearly unmodulated: the raw frames' phase contrast falls
    assert _phase_contrast(raw1) < 0.6 * _phase_contrast(raw0), (_phase_contrast(raw0), _phase_contrast(raw1))
    np.testing.assert_array_equal(gt0, gt1)  # the truth is the in-focus structure only
    # an explicit 0 is the default: same bytes
    _, raw2, wf2, _ = _sim_cli(tmp_path, "zero", "--out-of-focus", "0")
    np.testing.assert_array_equal(raw0, raw2)
    np.testing.assert_array_equal(wf0, wf2)


@pytest.mark.parametrize(
    "args, flag",
    [
        (["sim", "--out-of-focus", "-0.5"], "--out-of-focus must be"),
        (["sim", "--out-of-focus", "nan"], "--out-of-focus must be"),
        (["sim", "--out-of-focus", "0.5", "--defocus-um", "0"], "--defocus-um must be"),
        (["sim", "--out-of-focus", "0.5", "--defocus-um", "inf"], "--defocus-um must be"),
        (["sim", "--defocus-um", "2"], "give --out-of-focus"),
        (["lattice", "--out-of-focus", "0.5"], "--out-of-focus does not apply"),
        (["sim", "--readout-noise", "2", "--counts", "10"], "--readout-noise does not apply"),
        (["sim", "--speed", "1"], "--speed does not apply"),
    ],
)
def test_cli_sim_bad_haze_options_exit_2_naming_the_flag(tmp_path, args, flag):
    res = runner.invoke(app, ["simulate", *args, "--size", "32", "32", "-o", str(tmp_path / "x.tif")])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and flag in lines[0], res.output
    assert not (tmp_path / "x.tif").exists()


def test_simulate_movie_checks_haze_in_parameter_words():
    from emcs.simulate.fluorescence import simulate_movie

    for kwargs, param in (({"out_of_focus": -1.0}, "out_of_focus"),
                          ({"out_of_focus": 0.5, "defocus_um": -1.0}, "defocus_um")):
        with pytest.raises(EmcsError, match=f"^{param} must be") as info:
            simulate_movie(1, (32, 32), **kwargs)
        assert info.value.param == param


def test_cli_bad_output_suffix(tmp_path):
    res = runner.invoke(app, ["simulate", "lattice", "-o", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "unsupported output type" in res.output


def test_cli_help_lists_kinds():
    res = runner.invoke(app, ["simulate", "--help"])
    assert res.exit_code == 0
    for kind in KINDS:
        assert kind in res.output


# ----------------------------------------------------------------------------- optional packages
def test_missing_abtem_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    import sys

    from emcs.simulate import extras

    monkeypatch.setitem(sys.modules, "abtem", None)  # as if abTEM were not installed
    monkeypatch.setattr(extras, "_ABTEM", None)
    with pytest.raises(EmcsError, match=r"HRTEM kinds .*need abTEM: pip install 'emcs\[sim\]'"):
        movie("hrtem-particle", 1, (32, 32), seed=0)
    res = runner.invoke(app, ["simulate", "hrtem-particle", "-o", str(tmp_path / "x.tif"), "--size", "32", "32"])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and "emcs[sim]" in lines[0], res.output


def test_missing_ase_is_one_line_and_training_leaves_its_kinds_out(monkeypatch):
    import sys

    from emcs.simulate import clips, stem

    for name in ("ase", "ase.cluster"):
        monkeypatch.setitem(sys.modules, name, None)
    stem._cluster_positions.cache_clear()
    try:
        with pytest.raises(EmcsError, match=r"need ASE: pip install 'emcs\[sim\]'"):
            movie("haadf-particle", 1, (32, 32), seed=0)
    finally:
        stem._cluster_positions.cache_clear()
    monkeypatch.setattr(clips, "have", lambda module: module != "ase")
    assert "haadf-particle" not in clips.available_kinds() and "lattice" in clips.available_kinds()


# ----------------------------------------------------------------------------- structure
def test_generators_import_no_circle():
    """Every import between modules of emcs.simulate (lazy ones too) points one way."""
    import ast
    from pathlib import Path

    import emcs.simulate

    folder = Path(emcs.simulate.__file__).parent
    edges = {}
    for path in folder.glob("*.py"):
        name = "emcs.simulate" if path.stem == "__init__" else f"emcs.simulate.{path.stem}"
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("emcs.simulate"):
                subs = [f"{node.module}.{a.name}" for a in node.names]
                deps |= {s for s in subs if (folder / f"{s.rsplit('.', 1)[1]}.py").exists()} or {node.module}
        edges[name] = deps - {name}

    def visit(node, trail):
        assert node not in trail, " -> ".join([*trail, node])
        for dep in edges.get(node, ()):
            visit(dep, [*trail, node])

    for name in edges:
        visit(name, [])


def test_one_camera_for_every_generator():
    """The SIM camera is the shared camera with an offset (same draws, same counts)."""
    from emcs.simulate.detector import camera_counts
    from emcs.simulate.fluorescence import add_camera_noise

    signal = np.random.default_rng(0).random((2, 16, 16)) * 300
    a = add_camera_noise(signal, np.random.default_rng(1), background=10.0, read_noise=1.5)
    rng = np.random.default_rng(1)
    lam = signal + 10.0
    ref = np.clip(np.rint(rng.poisson(lam) + rng.normal(100.0, 1.5, lam.shape)), 0, 65535).astype(np.uint16)
    np.testing.assert_array_equal(a, ref)
    b = camera_counts(lam, np.random.default_rng(1), readout_noise=1.5, offset=100.0, dtype=np.uint16)
    np.testing.assert_array_equal(a, b)


def test_stem_probe_without_the_cache_says_so(monkeypatch):
    """Without the abTEM probe cache the STEM probes come from numpy: the scans differ, so it warns."""
    from emcs.simulate import stem

    monkeypatch.setattr(stem, "_cached_profiles", lambda: None)
    with pytest.warns(UserWarning, match="no abTEM probe cache"):
        params, profile = stem.random_probe(np.random.default_rng(0))
    assert params["probe"] == "numpy" and profile.ndim == 1
    prof = np.linspace(1.0, 0.0, 8)
    monkeypatch.setattr(stem, "_cached_profiles", lambda: (np.array([[300.0, 25.0, 0.0, 0.0, 0.5]]), [prof]))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        params, profile = stem.random_probe(np.random.default_rng(0))
    assert params["probe"] == "abtem" and np.array_equal(profile, prof)

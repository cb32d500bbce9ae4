"""DLSS-STEM's blurred target: ``emcs supersample --target blurred|scan``, ``emcs train dlss --target``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from emcs.cli import app
from emcs.dlss.files import resolve_target
from emcs.dlss.sampling import subsample
from emcs.dlss.smoothing import paper_blur
from emcs.dlss.supersample import load_default_model, net_estimate, supersample_frame
from emcs.errors import EmcsError
from emcs.io import read_stack, write_stack

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("shape", [(5, 5), (37, 41), (2, 3, 9, 8)])
def test_paper_blur_is_the_papers_5x5_gaussian(shape):
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    ref = ndimage.gaussian_filter(x, [0] * (x.ndim - 2) + [2.5, 2.5], truncate=0.8, mode="reflect")
    np.testing.assert_allclose(paper_blur(x), ref, atol=1e-6)
    assert paper_blur(x).dtype == np.float32
    # the kernel is 5 x 5: an impulse spreads over exactly 5 x 5 pixels
    imp = np.zeros((11, 11), np.float32)
    imp[5, 5] = 1
    assert int((paper_blur(imp) > 0).sum()) == 25


def test_resolve_target_defaults_and_errors():
    assert resolve_target(None, "net") == "blurred"
    assert resolve_target(None, "bilinear") == "scan"
    assert resolve_target(None, "net", denoise_measured=True) == "scan"
    assert resolve_target(None, "net", smooth=2.0) == "scan"
    assert resolve_target(" Scan ", "net") == "scan"
    assert resolve_target("blurred", "bicubic") == "blurred"
    for bad, kw in (("sharp", {}), ("blurred", {"smooth": "auto"}), ("blurred", {"denoise_measured": True})):
        with pytest.raises(EmcsError) as e:
            resolve_target(bad, "net", **kw)
        assert e.value.param == "target"


def test_blurred_target_is_the_blurred_scan_estimate():
    """Blurring is linear: the blurred target is the blurred full-scan output, samples kept before blurring."""
    import torch

    torch.set_num_threads(1)
    model, _ = load_default_model()
    rng = np.random.default_rng(5)
    x = rng.random((64, 72)).astype(np.float32)
    for method, m in (("bilinear", None), ("net", model)):
        sp = subsample(x, 4)
        scan = supersample_frame(sp, 4, x.shape, method, m, tile=64)
        blurred = supersample_frame(sp, 4, x.shape, method, m, tile=64, target="blurred")
        np.testing.assert_allclose(blurred, paper_blur(scan), atol=1e-6)
        assert not np.allclose(subsample(blurred, 4), sp)  # the samples are blurred too
    with pytest.raises(ValueError):
        supersample_frame(sp, 4, x.shape, "bilinear", target="blurred", keep_measured=False)
    with pytest.raises(ValueError):
        supersample_frame(sp, 4, x.shape, "bilinear", target="sharp")


def test_blurred_target_beats_the_full_scan_against_the_blurred_scan():
    """On a noisy scan, against the paper's blurred reference, the default output is closer than --target scan."""
    import torch

    from emcs.simulate.textures import degrade, stem_texture

    torch.set_num_threads(1)
    model, _ = load_default_model()
    noisy, _ = degrade(np.random.default_rng(3), stem_texture(np.random.default_rng(1003), 128))
    ref = paper_blur(noisy)
    for s in (4, 8):
        sp = subsample(noisy, s)
        errs = {t: float(np.sqrt(np.mean((supersample_frame(sp, s, noisy.shape, "net", model, tile=128, target=t)
                                          - ref) ** 2))) for t in ("scan", "blurred")}
        assert errs["blurred"] < errs["scan"], (s, errs)


def test_cli_target_option(tmp_path):
    rng = np.random.default_rng(2)
    x = (rng.random((1, 48, 44)) * 1000).astype(np.float32)
    src, sp = tmp_path / "full.tif", tmp_path / "sp.tif"
    write_stack(src, x)
    assert _run("subsample", src, "-s", 4, "-o", sp, "--quiet").exit_code == 0
    outs = {}
    for name, args in (("net", []), ("net-scan", ["--target", "scan"]), ("bil", ["-m", "bilinear"]),
                       ("bil-blur", ["-m", "bilinear", "--target", "blurred"])):
        out = tmp_path / f"{name}.tif"
        r = _run("supersample", sp, "-o", out, "--json", "--tile", 48, *args)
        assert r.exit_code == 0, r.output
        summary = json.loads(r.stdout)
        outs[name] = (read_stack(out)[0][0], summary)
    assert outs["net"][1]["target"] == "blurred" and outs["net"][1]["measured_samples"] == "blurred with the scan"
    assert outs["net-scan"][1]["target"] == "scan" and outs["net-scan"][1]["measured_samples"] == "kept exactly"
    assert outs["bil"][1]["target"] == "scan"
    np.testing.assert_array_equal(subsample(outs["bil"][0], 4), subsample(x[0], 4))
    np.testing.assert_allclose(outs["net"][0], paper_blur(outs["net-scan"][0]), atol=2e-3 * 1000)
    np.testing.assert_allclose(outs["bil-blur"][0], paper_blur(outs["bil"][0]), atol=1e-3)
    for args in (["--target", "sharp"], ["--target", "blurred", "--smooth", "2"],
                 ["--target", "blurred", "--denoise-measured"]):
        r = _run("supersample", sp, "-o", tmp_path / "bad.tif", *args)
        assert r.exit_code == 2, r.output
        assert "--target" in r.stderr and "Traceback" not in r.output
        assert not (tmp_path / "bad.tif").exists()


def test_train_batch_blurred_target_is_exact_where_the_input_knows_it():
    from emcs.train.dlss import make_batch

    a = make_batch(np.random.default_rng(7), 3, 48, (4, 6), target="scan")
    b = make_batch(np.random.default_rng(7), 3, 48, (4, 6), target="blurred")
    np.testing.assert_array_equal(a[0], b[0])  # the same inputs
    for feats, clean, blurred, s in zip(a[0], a[1], b[1], a[2], strict=True):
        mask = feats[2] > 0
        known = clean[0].copy()
        known[mask] = feats[1][mask]  # the nearest-fill channel holds the samples at their positions
        np.testing.assert_allclose(blurred[0], paper_blur(known), atol=1e-6)
        assert s in (4, 6)


def test_a_blurred_model_serves_only_the_blurred_target(tmp_path):
    import shutil

    from emcs.dlss.supersample import default_model_path

    src = default_model_path()
    dst = tmp_path / "blur.safetensors"
    shutil.copy(src, dst)
    card = json.loads(src.with_suffix(".json").read_text())
    card["output_target"] = "blurred"
    dst.with_suffix(".json").write_text(json.dumps(card))
    x = np.random.default_rng(1).random((1, 40, 40)).astype(np.float32)
    sp = tmp_path / "sp.tif"
    write_stack(sp, subsample(x, 4))
    r = _run("supersample", sp, "-s", 4, "-o", tmp_path / "o.tif", "--model", dst, "--target", "scan")
    assert r.exit_code == 2 and "blurred" in r.stderr, r.output
    r = _run("supersample", sp, "-s", 4, "-o", tmp_path / "o.tif", "--model", dst, "--json", "--tile", 40,
             "--no-safeguard")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["target"] == "blurred"
    model, _ = load_default_model(dst)
    direct = supersample_frame(subsample(x[0], 4), 4, (40, 40), "net", model, tile=40, target="blurred",
                               safeguard=False)
    # used as it is: its estimate, neither blurred again nor with samples pasted back
    np.testing.assert_array_equal(direct, net_estimate(subsample(x[0], 4), 4, (40, 40), model, tile=40))
    np.testing.assert_allclose(read_stack(tmp_path / "o.tif")[0][0], direct, atol=1e-5)
    with pytest.raises(ValueError):
        supersample_frame(subsample(x[0], 4), 4, (40, 40), "net", model, tile=40)  # target 'scan'
    safe = supersample_frame(subsample(x[0], 4), 4, (40, 40), "net", model, tile=40, target="blurred")
    assert np.isfinite(safe).all()

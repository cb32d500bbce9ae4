"""Tests for emcs.compare (metrics, codec baselines at a byte budget) and `emcs compare`."""

from __future__ import annotations

import json
import math
import zipfile

import numpy as np
import pytest
from typer.testing import CliRunner

from emcs.cli import app
from emcs.compare.codecs import CODECS, encode_at_budget
from emcs.compare.metrics import nrmse, psnr, score_stack, ssim
from emcs.io import write_stack

runner = CliRunner()


def _scene(T=4, H=64, W=64, seed=0, dtype=np.uint8, lo=20, hi=230):
    """Smooth blobs plus a little texture, drifting frame to frame (like a movie)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    base = gaussian_filter(rng.random((H + T * 2, W + T * 2)), 3)
    base += 0.15 * gaussian_filter(rng.random(base.shape), 0.7)
    base = (base - base.min()) / (base.max() - base.min())
    frames = np.stack([base[t * 2 : t * 2 + H, t : t + W] for t in range(T)])
    out = lo + frames * (hi - lo)
    if np.dtype(dtype).kind == "f":
        return out.astype(dtype)
    return np.rint(out).astype(dtype)


# --------------------------------------------------------------------------- metrics
def test_identical_frames_give_inf_psnr_ssim_one_nrmse_zero():
    ref = _scene(T=3)
    assert psnr(ref[0], ref[0]) == math.inf
    assert ssim(ref[0], ref[0]) == pytest.approx(1.0, abs=1e-12)
    assert nrmse(ref[0], ref[0]) == 0.0
    s = score_stack(ref, ref)
    assert s["psnr"] == [math.inf] * 3 and s["psnr_mean"] == math.inf
    assert s["ssim_mean"] == pytest.approx(1.0, abs=1e-12)
    assert s["nrmse_mean"] == 0.0 and s["frames"] == 3


def test_known_additive_offset_gives_exact_psnr_and_nrmse():
    ref = _scene(T=2).astype(np.float64)
    c = 3.0
    r = float(ref.max() - ref.min())
    expected = 10 * math.log10(r**2 / c**2)
    assert psnr(ref + c, ref, data_range=r) == pytest.approx(expected, abs=1e-9)
    s = score_stack(ref + c, ref)
    assert s["data_range"] == r
    assert s["psnr"] == pytest.approx([expected, expected], abs=1e-9)
    assert s["psnr_stack"] == pytest.approx(expected, abs=1e-9)
    assert s["nrmse"][0] == pytest.approx(c / math.sqrt(np.mean(ref[0] ** 2)), rel=1e-12)
    # a uniform offset keeps the structure: SSIM close to, but below, 1
    assert 0.95 < s["ssim"][0] < 1.0


def test_stack_uses_one_global_data_range():
    ref = np.zeros((2, 16, 16))
    ref[0, 4:12, 4:12] = 100.0  # range 100
    ref[1, 4:12, 4:12] = 10.0  # range 10 on its own
    s = score_stack(ref + 1.0, ref)
    assert s["data_range"] == 100.0
    assert s["psnr"] == pytest.approx([40.0, 40.0])  # both against R = 100
    assert psnr(ref[1] + 1.0, ref[1]) == pytest.approx(20.0)  # per-frame default


def test_ssim_drops_with_noise_and_handles_small_frames():
    ref = _scene(T=1)[0].astype(float)
    rng = np.random.default_rng(1)
    a = ssim(ref + rng.normal(0, 2, ref.shape), ref)
    b = ssim(ref + rng.normal(0, 20, ref.shape), ref)
    assert 1.0 > a > b
    small = ref[:8, :8]
    assert ssim(small, small) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        psnr(ref[:8], ref)
    with pytest.raises(ValueError, match="constant"):
        psnr(np.ones((4, 4)), np.ones((4, 4)))


# --------------------------------------------------------------------------- codecs
@pytest.mark.parametrize("codec", CODECS)
def test_codec_search_never_exceeds_budget_and_improves_with_budget(codec):
    frames = _scene(T=3)
    raw = frames.nbytes
    prev = -math.inf
    for ratio in (10, 6, 3, 1.5):
        budget = int(raw // ratio)
        res = encode_at_budget(frames, codec, budget)
        assert res.ok, res.reason
        assert res.nbytes <= budget
        assert res.nbytes == sum(res.frame_bytes) + res.side_bytes
        assert res.decoded.shape == frames.shape and res.decoded.dtype == frames.dtype
        assert res.bits_per_pixel == pytest.approx(8 * res.nbytes / frames.size)
        p = score_stack(res.decoded, frames)["psnr_stack"]
        assert p >= prev - 0.05, (codec, ratio, p, prev)
        prev = p


@pytest.mark.parametrize("codec", CODECS)
def test_budget_too_small_is_reported(codec):
    res = encode_at_budget(_scene(T=2), codec, 40)
    assert not res.ok and res.decoded is None and res.nbytes == 0
    assert "exceeds 40 bytes" in res.reason


@pytest.mark.parametrize("codec", ["jpeg2000", "jpegxl"])
def test_uint16_lossless_is_exact_and_stretch_invertible(codec):
    # 16-bit data using a narrow part of the range, like a STEM detector
    frames = _scene(T=2, H=32, W=32, dtype=np.uint16, lo=15131, hi=19023)
    res = encode_at_budget(frames, codec, frames.nbytes * 2)
    assert res.lossless and res.stretch == "none" and res.codec_dtype == "uint16"
    assert res.side_bytes == 0
    np.testing.assert_array_equal(res.decoded, frames)
    # the lossy modes use the per-frame stretch, which is exactly invertible
    from emcs.compare.codec_frames import _from_codec, prepare_frames

    prepared, params, mode = prepare_frames(frames, codec, "auto")
    assert mode == "frame" and params.shape == (2, 2)
    back = np.stack([_from_codec(p, lohi, frames.dtype) for p, lohi in zip(prepared, params, strict=True)])
    np.testing.assert_array_equal(back, frames)


def test_float_and_16bit_inputs_come_back_in_their_dtype():
    f32 = _scene(T=2, dtype=np.float32, lo=-1.5, hi=2.5)
    res = encode_at_budget(f32, "jpeg", f32.size // 2)
    assert res.ok and res.decoded.dtype == np.float32 and res.codec_dtype == "uint8"
    assert score_stack(res.decoded, f32)["psnr_mean"] > 25
    u16 = _scene(T=2, dtype=np.uint16, lo=1000, hi=3000)
    res = encode_at_budget(u16, "jpegxl", u16.nbytes // 10, stretch="global")
    assert res.ok and res.decoded.dtype == np.uint16 and res.side_bytes == 8
    assert res.nbytes <= u16.nbytes // 10


def test_long_stack_uses_subset_start_and_still_fits():
    from emcs.compare.codecs import _search

    frames = _scene(T=12, H=48, W=48)
    for codec in CODECS:
        budget = frames.nbytes // 4
        res = encode_at_budget(frames, codec, budget)  # > 8 frames: subset first
        assert res.ok and res.nbytes <= budget
        plain, _ = _search(frames, codec, budget, res.stretch, None, None)  # plain bisection
        plain_bytes = sum(len(b) for b in plain[2])
        assert res.nbytes >= 0.9 * plain_bytes, (codec, res.nbytes, plain_bytes)


# --------------------------------------------------------------------------- CLI
@pytest.fixture
def stacks(tmp_path):
    truth = _scene(T=4)
    rng = np.random.default_rng(3)
    ref = np.clip(truth + rng.normal(0, 6, truth.shape), 0, 255).astype(np.uint8)
    recon = (0.5 * ref + 0.5 * truth).astype(np.float32)
    paths = {}
    for name, data in (("truth", truth), ("ref", ref), ("recon", recon)):
        paths[name] = tmp_path / f"{name}.tif"
        write_stack(paths[name], data)
    paths["container"] = tmp_path / "meas.npz"
    np.savez_compressed(paths["container"], y=rng.random(800).astype(np.float32))
    return paths


def test_cli_mismatched_shapes_refused_in_one_line(stacks, tmp_path):
    other = tmp_path / "small.tif"
    write_stack(other, _scene(T=3))
    result = runner.invoke(app, ["compare", str(other), str(stacks["ref"])])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert lines[0].startswith("emcs: error: ") and str(other) in lines[0]
    assert "(3, 64, 64)" in lines[0] and "(4, 64, 64)" in lines[0]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--bytes", "100", "--container", "C"], "--bytes must not be given with a container"),
        (["--bytes", "0"], "--bytes must be a positive number"),
        (["--plot", "fig.gif"], "--plot must be a .png"),
        (["--baselines", "jpeg"], "--baselines need a byte budget"),
        (["--bytes", "1000", "--baselines", "png"], "--baselines: unknown codec"),
        (["--container", "REF"], "not an emcs measurement container"),
    ],
)
def test_cli_bad_options_exit_2(stacks, extra, message):
    extra = [str(stacks["container"]) if a == "C" else str(stacks["ref"]) if a == "REF" else a
             for a in extra]
    result = runner.invoke(app, ["compare", str(stacks["recon"]), str(stacks["ref"]), *extra])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


def test_cli_json_scores_and_baselines_within_budget(stacks):
    budget = stacks["container"].stat().st_size
    result = runner.invoke(
        app,
        ["compare", str(stacks["recon"]), str(stacks["ref"]), "--truth", str(stacks["truth"]),
         "--container", str(stacks["container"]), "--baselines", "jpeg,jpegxl", "--json"],
    )
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["budget_bytes"] == budget and out["frames"] == 4
    assert out["data_range"]["reference"] > 0 and out["data_range"]["truth"] > 0
    assert set(out["results"]) == {"emcs", "jpeg", "jpegxl"}
    emcs = out["results"]["emcs"]
    assert len(emcs["vs_reference"]["psnr"]) == 4 and "vs_truth" in emcs
    for codec in ("jpeg", "jpegxl"):
        entry = out["results"][codec]
        assert entry["ok"] and entry["nbytes"] <= budget
        assert entry["vs_truth"]["psnr_mean"] > 10


def test_cli_identical_stacks_json_is_strict(stacks):
    result = runner.invoke(app, ["compare", str(stacks["ref"]), str(stacks["ref"]), "--json"])
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert out["results"]["emcs"]["vs_reference"]["psnr_mean"] == "inf"
    assert out["results"]["emcs"]["vs_reference"]["ssim_mean"] == pytest.approx(1.0)


def test_cli_plot_writes_png_and_refuses_overwrite(stacks, tmp_path):
    fig = tmp_path / "fig.png"
    args = ["compare", str(stacks["recon"]), str(stacks["ref"]), "--truth", str(stacks["truth"]),
            "--bytes", "3000", "--baselines", "jpeg", "--plot", str(fig), "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--force" in again.stderr
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0


def test_container_budget_is_file_size(stacks):
    from emcs.compare.report import budget_from_container

    assert zipfile.is_zipfile(stacks["container"])
    assert budget_from_container(stacks["container"]) == stacks["container"].stat().st_size

"""The static blend (emcs.tcs.static): still scenes gain, moving ones are not hurt, the output stays
consistent with the measurement, groups are blended on their own, bad values are named."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from emcs.errors import EmcsError
from emcs.tcs.container import open_container
from emcs.tcs.decode import decode_container, iter_decoded, plan_methods
from emcs.tcs.encode import encode_stack
from emcs.tcs.operator import TcsOperator
from emcs.tcs.static import blend_measurement, box, consistency

SIZE = 64
DOSE = 15.0


def _scene(rng, size=SIZE + 32) -> np.ndarray:
    """A smooth still specimen in about [0.1, 1]: blobs of several sizes on a background."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    img = np.full((size, size), 0.2)
    for _ in range(40):
        cy, cx = rng.uniform(0, size, 2)
        r = rng.uniform(1.5, 5.0)
        img += rng.uniform(0.2, 0.6) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    return img / img.max()


def _movie(drift: float, T: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(clean, counts): the scene shifted by ``drift`` px/frame along a diagonal (Fourier
    shift), cropped to SIZE, recorded at DOSE counts/px."""
    rng = np.random.default_rng(seed)
    scene = _scene(rng)
    f = np.fft.fft2(scene)
    ky = np.fft.fftfreq(scene.shape[0])[:, None]
    kx = np.fft.fftfreq(scene.shape[1])[None, :]
    frames = []
    for t in range(T):
        d = drift * t / np.sqrt(2)
        shifted = np.fft.ifft2(f * np.exp(-2j * np.pi * (ky * d + kx * d))).real
        frames.append(shifted[16:16 + SIZE, 16:16 + SIZE])
    clean = np.clip(np.array(frames, np.float32), 0.02, None)
    counts = rng.poisson(clean * DOSE).astype(np.uint8)
    return clean * DOSE, counts


def _psnr(x, ref) -> float:
    r = float(ref.max() - ref.min())
    return float(np.mean([10 * np.log10(r * r / np.mean((a - b) ** 2)) for a, b in zip(x, ref, strict=True)]))


def _decode(tmp_path, counts, B, static_blend, name="c"):
    src = tmp_path / f"{name}.npy"
    np.save(src, counts)
    box_ = tmp_path / f"{name}.npz"
    if not box_.exists():
        encode_stack(src, box_, B=B, seed=11, force=True, threads=1)
    out = tmp_path / f"{name}-{static_blend}.npy"
    summary = decode_container(box_, out, device="cpu", force=True, dtype="float32",
                               static_blend=static_blend)
    return np.load(out), summary


@pytest.fixture(scope="module")
def network():
    pytest.importorskip("torch")
    from emcs.tcs.decoders import select_decoder

    if select_decoder("auto", 20, 0.5)[0] == "gap-tv":
        pytest.skip("no network decoder installed")


def test_static_movie_gains(tmp_path, network):
    clean, counts = _movie(0.0, 20)
    off, _ = _decode(tmp_path, counts, 20, "off")
    on, summary = _decode(tmp_path, counts, 20, "on")
    assert summary["static_blend"] == "on" and summary["decoders"][0].startswith("net:")
    gain = _psnr(on, clean) - _psnr(off, clean)
    assert gain > 1.0, gain


def test_moving_movie_is_not_hurt(tmp_path, network):
    clean, counts = _movie(0.7, 20)
    off, _ = _decode(tmp_path, counts, 20, "off")
    on, _ = _decode(tmp_path, counts, 20, "on")
    assert _psnr(on, clean) >= _psnr(off, clean) - 0.1


def test_output_stays_consistent_with_the_measurement():
    """A still scene, frames with flicker: the blend removes the flicker and its forward model
    still matches Y within the noise."""
    rng = np.random.default_rng(0)
    B, sigma = 20, 0.05
    truth = _scene(rng, SIZE) * 0.8
    op = TcsOperator.generated(seed=5, B=B, frame_shape=(SIZE, SIZE))
    C = op.masks(B)
    noisy = truth[None] + rng.normal(0, sigma, (B, SIZE, SIZE))
    y = (C * noisy).sum(0)
    flicker = truth[None] + rng.normal(0, sigma / 3, (B, SIZE, SIZE))
    out, stats = blend_measurement(flicker.astype(np.float32), y, C, sigma)
    assert np.mean((out - truth) ** 2) < 0.5 * np.mean((flicker - truth) ** 2)
    assert stats["alpha"] < 0.3
    assert consistency(out, y, C, sigma) < 1.5


def test_strips_equal_one_piece():
    rng = np.random.default_rng(1)
    B = 10
    op = TcsOperator.generated(seed=2, B=B, frame_shape=(96, 40))
    x = rng.uniform(0.2, 0.8, (B, 96, 40)).astype(np.float32)
    y = (op.masks(B) * x).sum(0) + rng.normal(0, 0.1, (96, 40))
    whole, _ = blend_measurement(x, y, op.masks(B), 0.05)
    strips, _ = blend_measurement(x, y, op, 0.05, rows=16)
    np.testing.assert_allclose(strips, whole, atol=1e-5)


@pytest.mark.parametrize("drift", [0.1, 0.4])  # near-static, and drifting (the drift blend)
def test_groups_are_blended_on_their_own(tmp_path, network, drift):
    """Chunk purity: a slice of the groups (as emcs.distributed decodes them) gives the frames
    the whole container gives."""
    _, counts = _movie(drift, 30)
    src = tmp_path / "m.npy"
    np.save(src, counts)
    encode_stack(src, tmp_path / "m.npz", B=10, seed=4, force=True, threads=1)
    with open_container(tmp_path / "m.npz") as c:
        plan, _ = plan_methods(c, "auto")
        whole = np.concatenate([f for _, f in iter_decoded(c, plan, dtype=np.float32, static_blend="on",
                                                           max_elements=10 * SIZE * SIZE)])
        part = dataclasses.replace(c, measurements=np.asarray(c.measurements[1:2]), counts=c.counts[1:2],
                                   verified=True)
        middle = np.concatenate([f for _, f in iter_decoded(part, plan, dtype=np.float32,
                                                            static_blend="on")])
    np.testing.assert_allclose(middle, whole[10:20], atol=1e-5)


def test_bad_static_blend_names_the_parameter(tmp_path):
    _, counts = _movie(0.0, 10)
    src = tmp_path / "b.npy"
    np.save(src, counts)
    encode_stack(src, tmp_path / "b.npz", B=10, seed=1, force=True, threads=1)
    with pytest.raises(EmcsError) as err:
        decode_container(tmp_path / "b.npz", tmp_path / "b.tif", static_blend="maybe")
    assert err.value.param == "static_blend" and str(err.value).startswith("static_blend")


@pytest.mark.parametrize("shape, radius", [((9, 9), 1), ((32, 24), 16), ((40, 3), 4), ((5, 7), 12),
                                           ((70, 300), 4), ((3, 290), 16)])
def test_box_is_a_local_mean(shape, radius):
    """Windows cut by the edges (also windows wider than the frame) average what is inside; rows of
    256 or more take the row-by-row and blocked paths of ``_box1d`` (70 rows: three blocks)."""
    a = np.random.default_rng(0).normal(size=shape)
    want = a
    for axis in (0, 1):
        n = shape[axis]
        want = np.stack([np.take(want, range(max(0, i - radius), min(n, i + radius + 1)), axis).mean(axis)
                         for i in range(n)], axis)
    np.testing.assert_allclose(box(a, radius, passes=1), want, atol=1e-12)


def test_cli_static_blend_option(tmp_path):
    """``emcs decode --static-blend``: a bad value is a one-line error naming the flag; whether the
    blend was applied (default on; never to GAP-TV's frames) is recorded in the JSON summary."""
    from typer.testing import CliRunner

    from emcs.cli import app

    _, counts = _movie(0.0, 10)
    np.save(tmp_path / "s.npy", counts)
    encode_stack(tmp_path / "s.npy", tmp_path / "s.npz", B=10, seed=1, force=True, threads=1)
    run = CliRunner().invoke
    bad = run(app, ["decode", str(tmp_path / "s.npz"), "-o", str(tmp_path / "r.tif"),
                    "--static-blend", "maybe"])
    assert bad.exit_code == 2 and "--static-blend" in bad.stderr.strip().splitlines()[-1]
    for extra, value in (([], "on"), (["--static-blend", "off"], "off"),
                         (["--method", "gap-tv", "--iters", "2"], "off")):
        good = run(app, ["decode", str(tmp_path / "s.npz"), "-o", str(tmp_path / "r.npy"),
                         "--force", "--json", *extra])
        assert good.exit_code == 0, good.stderr
        assert f'"static_blend": "{value}"' in good.stdout

"""Adaptive groups (``emcs encode --adaptive``): where groups close, exact measurements of groups of
any size, decoding a mix of group sizes, and the encoder's shared per-group step."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from emcs.errors import EmcsError
from emcs.tcs.adaptive import (
    GroupCutter,
    adaptive_groups,
    block_means,
    change_ratio,
    group_sizes,
    sampled_pixels,
)
from emcs.tcs.container import load_container
from emcs.tcs.decode import decode_container
from emcs.tcs.encode import InputStats, encode_stack, noise_period, sum_group


def _scene(rng, H=96, W=96, blobs=40):
    """A smooth random scene (Gaussian blobs) with block-scale structure, values about 5..60."""
    yy, xx = np.mgrid[:H, :W]
    img = np.full((H, W), 5.0)
    for _ in range(blobs):
        cy, cx, r = rng.uniform(0, H), rng.uniform(0, W), rng.uniform(3, 8)
        img += 40 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    return img


def _movie_with_cuts(path, cuts=(7, 19), T=30, seed=0):
    """Poisson counts of still scenes that change at the frames ``cuts``; saved as .npy."""
    rng = np.random.default_rng(seed)
    bounds = [0, *cuts, T]
    clean = np.concatenate([np.repeat(_scene(rng)[None], b - a, 0)
                            for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
    movie = rng.poisson(clean).astype(np.uint16)
    np.save(path, movie)
    return str(path), movie


def _starts(counts):
    return np.concatenate([[0], np.cumsum(counts)[:-1]])


def test_change_ratio_is_zero_when_still_and_large_at_a_cut():
    rng = np.random.default_rng(1)
    a, b = _scene(rng), _scene(rng)
    frames = rng.poisson(np.stack([a, a, a, b])).astype(np.float64)
    noise_var = np.sqrt(a.mean()) ** 2 / sampled_pixels(a.shape)
    r = change_ratio(block_means(frames), noise_var)
    assert abs(r[1]) < 0.05 and abs(r[2]) < 0.05
    assert r[3] > 0.5
    # a uniform offset is no change of scene; a change of gain g adds (g - 1)^2
    assert abs(change_ratio(block_means(np.stack([a, a + 7])), 0.0)[1]) < 1e-9
    assert change_ratio(block_means(np.stack([a, 1.1 * a])), 0.0)[1] < 0.011


def test_cutter_respects_min_frames_and_B():
    means = np.zeros((6, 4))
    means[1:] = [1, -1, 1, -1]  # every frame after the first differs a lot
    assert GroupCutter(6, 0.0, (8, 8), 0.5, min_frames=1).length(means) == 1
    assert GroupCutter(6, 0.0, (8, 8), 0.5, min_frames=3).length(means) == 3
    still = np.ones((6, 4))
    assert GroupCutter(4, 0.0, (8, 8), 0.5, 2).length(still) == 4
    assert GroupCutter(10, 0.0, (8, 8), 0.5, 2).length(still[:3]) == 3  # the movie's end


def test_groups_close_at_the_cuts_and_cover_every_frame_once():
    rng = np.random.default_rng(2)
    movie = rng.poisson(np.concatenate([np.repeat(_scene(rng)[None], n, 0) for n in (7, 12, 11)]))
    groups = list(adaptive_groups(lambda a, b: movie[a:b], len(movie), 10, lambda f: np.sqrt(f.mean())))
    assert [(s, len(g)) for s, g in groups] == [(0, 7), (7, 10), (17, 2), (19, 10), (29, 1)]
    np.testing.assert_array_equal(np.concatenate([g for _, g in groups]), movie)


def test_adaptive_encode_is_exact_for_every_group_size(tmp_path):
    src, movie = _movie_with_cuts(tmp_path / "m.npy")
    res = encode_stack(src, tmp_path / "a.npz", B=10, seed=3, adaptive=True, pack="predictive")
    c = load_container(tmp_path / "a.npz")
    assert c.counts.tolist() == [7, 10, 2, 10, 1]
    assert res["groups"] == group_sizes(c.counts) == {"groups": 5, "min_frames": 1, "mean_frames": 6.0,
                                                      "max_frames": 10}
    assert c.meta["encoder"]["groups"]["kind"] == "adaptive"
    masks = c.masks().astype(np.int64)
    for k, (start, n) in enumerate(zip(_starts(c.counts), c.counts, strict=True)):
        expected = (movie[start:start + n].astype(np.int64) * masks[:n]).sum(0)
        np.testing.assert_array_equal(np.asarray(c.measurements[k]), expected)


def test_a_still_movie_gives_the_fixed_groups_and_the_same_measurements(tmp_path):
    rng = np.random.default_rng(4)
    movie = rng.poisson(np.repeat(_scene(rng)[None], 25, 0)).astype(np.uint16)
    np.save(tmp_path / "still.npy", movie)
    encode_stack(tmp_path / "still.npy", tmp_path / "a.npz", seed=5, adaptive=True)
    encode_stack(tmp_path / "still.npy", tmp_path / "f.npz", seed=5)
    a, f = load_container(tmp_path / "a.npz"), load_container(tmp_path / "f.npz")
    assert a.counts.tolist() == f.counts.tolist() == [10, 10, 5]
    np.testing.assert_array_equal(np.asarray(a.measurements[:]), np.asarray(f.measurements[:]))
    assert a.meta["input"] == f.meta["input"]
    assert "groups" not in f.meta["encoder"]  # fixed containers are as before


def test_decoding_a_mix_of_group_sizes_puts_every_frame_in_place(tmp_path):
    src, movie = _movie_with_cuts(tmp_path / "m.npy", cuts=(4, 9), T=16)
    encode_stack(src, tmp_path / "a.npz", B=8, seed=6, adaptive=True)
    assert load_container(tmp_path / "a.npz").counts.tolist() == [4, 5, 7]
    notes = []
    res = decode_container(tmp_path / "a.npz", tmp_path / "d.npy", method="gap-tv", iters=30,
                           dtype="float32", on_note=notes.append)
    out = np.load(tmp_path / "d.npy")
    assert out.shape == movie.shape and res["n_measurements"] == 3
    # each decoded frame is closest to the scene it came from
    scenes = [movie[a:b].mean(0) for a, b in ((0, 4), (4, 9), (9, 16))]
    truth = np.repeat(np.arange(3), [4, 5, 7])
    nearest = [int(np.argmin([np.abs(x - s).mean() for s in scenes])) for x in out]
    assert nearest == truth.tolist()


def test_adaptive_options_are_checked(tmp_path):
    src, _ = _movie_with_cuts(tmp_path / "m.npy")
    with pytest.raises(EmcsError, match="adaptive_threshold must be > 0") as err:
        encode_stack(src, tmp_path / "a.npz", adaptive=True, adaptive_threshold=0)
    assert err.value.param == "adaptive_threshold"
    with pytest.raises(EmcsError, match="min_frames must be between 1 and B=10"):
        encode_stack(src, tmp_path / "a.npz", adaptive=True, min_frames=11)
    assert not (tmp_path / "a.npz").exists()


def test_chunked_encode_refuses_adaptive_in_one_line(tmp_path):
    from emcs.distributed.chunks import encode_chunked

    src, _ = _movie_with_cuts(tmp_path / "m.npy")
    with pytest.raises(EmcsError) as err:
        encode_chunked(None, src, tmp_path / "a.npz", adaptive=True)  # refused before the cluster
    message = str(err.value.with_flags({"adaptive": "--adaptive"}))
    assert message.startswith("--adaptive cannot encode one movie in chunks") and "\n" not in message
    assert not (tmp_path / "a.npz").exists()


def test_cli_reports_the_group_sizes(tmp_path):
    from typer.testing import CliRunner

    from emcs.cli import app

    src, _ = _movie_with_cuts(tmp_path / "m.npy")
    runner = CliRunner()
    r = runner.invoke(app, ["encode", src, "-o", str(tmp_path / "a.npz"), "--adaptive", "--seed", "1",
                            "--json"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["groups"] == {"groups": 5, "min_frames": 1, "mean_frames": 6.0,
                                              "max_frames": 10}
    r = runner.invoke(app, ["encode", src, "-o", str(tmp_path / "a.npz"), "--adaptive", "--force"])
    assert r.exit_code == 0, r.stderr
    assert "adaptive groups of 1-10 frames (mean 6.0), 5 measurements" in r.stderr


def test_sum_group_is_the_same_in_bands_on_a_pool_and_at_once():
    from emcs.tcs.operator import TcsOperator

    rng = np.random.default_rng(7)
    frames = rng.integers(0, 300, (6, 37, 21)).astype(np.uint16)
    patterns = TcsOperator.generated(1, 8, (37, 21)).patterns(frames.dtype)
    y1, r1, s1 = sum_group(frames, patterns)()
    with ThreadPoolExecutor(3) as pool:
        y3, r3, s3 = sum_group(frames, patterns, pool, 3)()
    np.testing.assert_array_equal(y1, y3)
    assert (r1, s1) == (r3, s3) == ((frames.min(), frames.max()), (y1.min(), y1.max()))


def test_input_stats_sample_the_noise_of_the_same_groups_in_parts():
    rng = np.random.default_rng(8)
    T, B = 170, 10  # 17 groups: noise from groups 0, 2, 4, ... (every N // 8 = 2)
    movie = rng.normal(100, 5, (T, 8, 8))
    whole = InputStats("m", noise_period(T, B))
    parts = [InputStats("m", noise_period(T, B)) for _ in range(2)]
    for start in range(0, T, B):
        frames = movie[start:start + B]
        whole.add(start, frames, frames.min(), frames.max())
        parts[start >= 80].add(start, frames, frames.min(), frames.max())
    parts[0].merge(parts[1])
    assert sorted(whole.sigmas) == [k * B for k in range(0, 17, 2)]
    assert (parts[0].lo, parts[0].hi, parts[0].sigmas) == (whole.lo, whole.hi, whole.sigmas)
    with pytest.raises(EmcsError, match="frames 20..29 contain NaN"):
        whole.add(20, movie[20:30].copy(), np.nan, 1.0)


@pytest.mark.slow
def test_cli_with_a_scheduler_encodes_many_movies_adaptively_and_refuses_one_in_chunks(tmp_path):
    pytest.importorskip("distributed")
    from typer.testing import CliRunner

    from emcs.cli import app

    movies = [_movie_with_cuts(tmp_path / f"m{i}.npy", seed=i)[0] for i in range(2)]
    runner = CliRunner()
    r = runner.invoke(app, ["encode", *movies, "--adaptive", "--seed", "1", "--scheduler", "local:1",
                            "--json"])
    assert r.exit_code == 0, r.stderr
    assert [res["groups"]["groups"] for res in json.loads(r.stdout)["results"]] == [5, 5]
    r = runner.invoke(app, ["encode", movies[0], "-o", str(tmp_path / "one.npz"), "--adaptive",
                            "--scheduler", "local:1"])
    assert r.exit_code == 2
    assert r.stderr.strip() == ("emcs: error: --adaptive cannot encode one movie in chunks: its groups "
                                "are decided in one sequential pass over the frames (leave out the "
                                "scheduler, or give several movies: each is then encoded whole by one "
                                "worker)")
    # fixed groups in chunks (the chunked encoder now takes --threads too)
    r = runner.invoke(app, ["encode", movies[0], "-o", str(tmp_path / "one.npz"), "--seed", "1",
                            "--scheduler", "local:1", "--quiet"])
    assert r.exit_code == 0, r.stderr


def test_adaptive_container_reads_back_through_info_and_decode(tmp_path):
    from typer.testing import CliRunner

    from emcs.cli import app

    path, movie = _movie_with_cuts(tmp_path / "cuts.npy")
    out = tmp_path / "cuts.npz"
    res = CliRunner().invoke(app, ["encode", path, "-B", "10", "--adaptive", "-o", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert CliRunner().invoke(app, ["info", str(out), "--check"]).exit_code == 0
    res = CliRunner().invoke(app, ["info", str(out), "--json"])
    assert res.exit_code == 0, res.output
    groups = json.loads(res.output)["groups"]
    assert groups["groups"] > 3 and groups["max_frames"] <= 10  # 30 frames, cuts at 7 and 19
    res = CliRunner().invoke(app, ["info", str(out)])
    assert "groups of" in res.output
    dec = tmp_path / "cuts.tif"
    res = CliRunner().invoke(app, ["decode", str(out), "--method", "gap-tv", "-o", str(dec), "--quiet"])
    assert res.exit_code == 0, res.output
    from emcs.io import read_stack

    assert read_stack(dec)[0].shape == movie.shape

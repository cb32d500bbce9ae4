"""Tests of emcs.train: the one loop, the TCS / DLSS / SIM recipes and ``emcs train ...``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from emcs.cli import app
from emcs.dlss.sampling import subsample
from emcs.io import write_stack
from emcs.sim.recon import load_network, net_frame
from emcs.simulate.clips import standin_movie
from emcs.simulate.masks import MASK_KINDS, structured_masks
from emcs.tcs.nets.tcsdl import TcsDlNet
from emcs.tcs.nets.unfold import UnfoldNet
from emcs.train.tcs import make_batch, model_loss, quantize_counts


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _assert_user_error(result):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("emcs: error:"), result.stderr
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- the loop
def test_schedule_warm_up_cosine_and_floor():
    from emcs.train.loop import Schedule

    s = Schedule(1.0, floor=0.02)
    assert s.at(0, 0.0) == 1.0 and s.at(7, 1.0) == pytest.approx(0.02) and s.at(3, 0.5) == pytest.approx(0.51)
    w = Schedule(1.0, floor=0.01, warmup=100)
    assert w.at(0, 0.0) == pytest.approx(0.01) and w.at(99, 0.0) == pytest.approx(1.0)
    after = Schedule(1.0, floor=0.01, warmup=10, decay_after_warmup=True, steps=110)
    assert after.at(4, 0.9) == pytest.approx(0.5) and after.at(10, 0.9) == pytest.approx(1.0)
    assert after.at(60, 0.0) == pytest.approx(0.505) and after.at(500, 0.0) == pytest.approx(0.01)


def test_budget_progress_is_the_largest_fraction():
    from emcs.train.loop import Budget, Clock

    clock = Clock(elapsed=30.0, cpu_elapsed=0.0)
    assert Budget(100).progress(25, clock) == 0.25
    assert Budget(100, max_minutes=1.0).progress(25, clock) >= 0.5
    assert Budget(0).progress(0, clock) == 1.0


def test_checkpoint_reads_the_old_spelling_and_refuses_others(tmp_path):
    from emcs.errors import EmcsError
    from emcs.train.loop import read_checkpoint, restore

    net = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(net.parameters())
    old = tmp_path / "old.pt"  # the spelling of emcs train tcs / dlss before emcs.train
    torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "step": 7, "elapsed": 1.5}, old)
    state = read_checkpoint(old)
    assert restore(state, net, opt, old) == 7 and "optimizer" in state
    bad = tmp_path / "bad.pt"
    torch.save({"weights": net.state_dict()}, bad)
    with pytest.raises(EmcsError, match="not an emcs training checkpoint"):
        read_checkpoint(bad)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(EmcsError, match="cannot read this checkpoint"):
        read_checkpoint(junk)
    with pytest.raises(EmcsError, match="cannot resume"):
        restore(state, torch.nn.Linear(3, 1), opt, old)


def test_run_saves_checkpoints_and_cards_and_resumes(tmp_path):
    from emcs.train.loop import Budget, Hooks, Schedule, read_checkpoint, run

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(1, 1)

    torch.manual_seed(0)
    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    x = torch.linspace(-1, 1, 16)[:, None]
    seen, lrs = [], []
    hooks = Hooks(batch=lambda step: seen.append(step) or x,
                  loss=lambda b: ((net.lin(b) - 3 * b) ** 2).mean(),
                  card=lambda step: {"architecture": "toy", "config": {}, "steps": step},
                  state=lambda: {"note": "kept"},
                  after_step=lambda done, loss, lr: lrs.append(lr))
    out, ckpt = tmp_path / "toy.safetensors", tmp_path / "toy.pt"
    card, done = run(net, opt, hooks, out=out, checkpoint=ckpt, budget=Budget(5), schedule=Schedule(0.1, 0.1),
                     every=2)
    assert done == 5 and card["steps"] == 5 and seen == [0, 1, 2, 3, 4]
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] < lrs[0]
    state = read_checkpoint(ckpt)
    assert state["step"] == 5 and state["note"] == "kept"
    assert json.loads(out.with_suffix(".json").read_text())["steps"] == 5
    card, done = run(net, opt, hooks, out=out, checkpoint=ckpt, budget=Budget(7), schedule=Schedule(0.1, 0.1),
                     start=5, every=2)
    assert done == 7 and seen[-2:] == [5, 6]


# --------------------------------------------------------------------------- TCS
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


def test_standin_movie_range():
    m = standin_movie(np.random.default_rng(0), 5, 32)
    assert m.shape == (5, 32, 32) and m.dtype == np.float32
    assert 0.0 <= m.min() and m.max() <= 1.0


def test_train_cli_runs_resumes_and_fine_tunes_on_a_folder(tmp_path):
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
    # the same fine-tune with its batches drawn in a worker process (which opens the folder itself)
    out3 = tmp_path / "tcs-mine-w.safetensors"
    res = runner.invoke(app, [*base, "--steps", "1", "--out", str(out3), "--data", str(movies),
                              "--resume", str(out), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert json.loads(out3.with_suffix(".json").read_text())["training"]["clips_by_source"] == {"folder": 5}


def test_quantized_training_measurements():
    from emcs.tcs.container import anscombe_codes, anscombe_values

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


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("density", [0.2, 0.5, 0.8])
def test_hardware_like_masks_have_their_density_and_structure(kind, density):
    C = structured_masks(np.random.default_rng(3), kind, 6, (64, 80), density)
    assert C.shape == (6, 64, 80) and C.dtype == bool
    assert abs(C.mean() - density) < 0.06
    if kind == "blocks4":
        assert (C[:, ::4, ::4] == C[:, 3::4, 3::4]).all()
    if kind == "rows":  # some whole rows open in every frame
        assert C.all(axis=2).any(axis=1).all()


def test_training_batches_with_hardware_masks_and_small_B(tmp_path):
    b = make_batch(np.random.default_rng(1), 2, 32, 3, density_range=(0.2, 0.8), use_simulator=False,
                   mask_kinds=("shifted",))
    assert b.masks.shape == (3, 2, 32, 32)
    for m in b.masks:  # each sample's second frame is its first shifted by one line
        assert (m[1, :-1] == m[0, 1:]).all() or (m[1, :, :-1] == m[0, :, 1:]).all()
    out = tmp_path / "tcs-m.safetensors"
    res = _train_tiny(out, "--B", "2,3", "--steps", "2", "--density", "0.2,0.8", "--mask-kinds", "rows,xor")
    assert res.exit_code == 0, res.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["B_range"] == [2, 3] and card["density_range"] == [0.2, 0.8]
    assert "hardware-like kinds rows, xor" in card["training"]["data"]


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
        (["--mask-kinds", "bernoulli,zigzag"], "--mask-kinds"),
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
    write_stack(tmp_path / "small.tif", np.zeros((3, 20, 20), np.uint8))
    res = CliRunner().invoke(app, ["train", "tcs", "--B", "10", "--steps", "1", "--data", str(tmp_path),
                                   "--out", str(tmp_path / "m.safetensors")])
    assert res.exit_code == 2 and "no movie here has 10 frames" in res.output


def test_train_tcs_resumes_an_old_checkpoint_and_refuses_a_foreign_one(tmp_path):
    out = tmp_path / "tcs-old.safetensors"
    assert _train_tiny(out, "--B", "4", "--steps", "1").exit_code == 0
    ckpt = tmp_path / ".tcs-old-train" / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)
    state["opt"] = state.pop("optimizer")  # the spelling of emcs.tcs.nets.train
    old = tmp_path / "old.pt"
    torch.save(state, old)
    res = _train_tiny(out, "--B", "4", "--steps", "2", "--resume", str(old))
    assert res.exit_code == 0, res.output
    assert json.loads(out.with_suffix(".json").read_text())["training"]["steps"] == 2
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    res = _train_tiny(out, "--B", "4", "--steps", "3", "--resume", str(foreign))
    assert res.exit_code == 2 and "not an emcs training checkpoint" in res.output
    assert len(res.output.strip().splitlines()) == 1


# --------------------------------------------------------------------------- DLSS
def test_train_resume_and_finetune(tmp_path):
    out = tmp_path / "m.safetensors"
    ck = tmp_path / "m.ckpt"
    base = ["train", "dlss", "--patch", 32, "--batch", 1, "--width", 6, "--out", out, "--checkpoint", ck, "-q"]
    r = _run(*base, "--steps", 2, "--save-every", 1)
    assert r.exit_code == 0, r.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["steps"] == 2 and card["architecture"] == "dlss-unet-v1"
    r = _run(*base, "--steps", 3, "--resume", ck)
    assert r.exit_code == 0, r.output
    assert json.loads(out.with_suffix(".json").read_text())["steps"] == 3
    scans = tmp_path / "scans"
    scans.mkdir()
    write_stack(scans / "s.tif", np.random.default_rng(0).random((40, 40)).astype(np.float32))
    out2 = tmp_path / "ft.safetensors"
    r = _run("train", "dlss", "--steps", 1, "--patch", 32, "--batch", 2, "--data", scans, "--init", out,
             "--out", out2, "-q", "--factors", "9,10,10", "--data-zoom", "0.8,1.25")
    assert r.exit_code == 0, r.output
    card2 = json.loads(out2.with_suffix(".json").read_text())
    assert card2["config"]["width"] == 6
    assert card2["factors"] == list(range(4, 11))  # a fine-tune keeps the pitches its start was trained on
    assert card2["factor_draw_weights"] == {"9": 1 / 3, "10": 2 / 3}
    assert "magnified 0.8-1.25x" in card2["training_data"]
    out4 = tmp_path / "s10.safetensors"  # a new network names only the pitches it was trained on
    r = _run("train", "dlss", "--steps", 1, "--patch", 32, "--batch", 1, "--width", 6, "--factors", "10",
             "--out", out4, "-q")
    assert r.exit_code == 0, r.output
    card4 = json.loads(out4.with_suffix(".json").read_text())
    assert card4["factors"] == [10] and card4["coverages"] == ["1/100"]
    x = np.random.default_rng(1).random((1, 40, 40)).astype(np.float32)
    write_stack(tmp_path / "sp.tif", x[:, ::4, ::4])
    r = _run("supersample", tmp_path / "sp.tif", "-s", 4, "-o", tmp_path / "o.tif", "--model", out4, "--tile", 40)
    assert r.exit_code == 0 and "trained for factors [10], not 4" in r.output, r.output
    out3 = tmp_path / "new.safetensors"
    _assert_user_error(_run("train", "dlss", "--steps", 1, "--data", tmp_path / "nope", "--out", out3))
    _assert_user_error(_run("train", "dlss", "--steps", 1, "--factors", "3,4", "--out", out3))
    _assert_user_error(_run("train", "dlss", "--steps", 1, "--factors", "four", "--out", out3))
    for zoom in ("0.1,2", "2,1", "big"):
        _assert_user_error(_run("train", "dlss", "--steps", 1, "--data", scans, "--data-zoom", zoom, "--out", out3))


def test_zoomed_crops_magnify_the_structures():
    from emcs.train.folders import zoomed_crop

    x = np.arange(300)
    stripes = np.tile(((x // 4) % 2).astype(np.float32), (300, 1))  # vertical stripes, period 8 px
    rng = np.random.default_rng(0)

    def period(crop):  # mean distance between sign changes of the middle row, x 2
        row = crop[crop.shape[0] // 2] - 0.5
        return 2 * crop.shape[1] / max(1, np.count_nonzero(np.diff(np.sign(row))))

    plain = zoomed_crop(rng, stripes, 64, (1.0, 1.0))
    assert plain.shape == (64, 64) and set(np.unique(plain)) <= {0.0, 1.0}  # a plain crop
    assert period(zoomed_crop(rng, stripes, 64, (2.0, 2.0))) == pytest.approx(16, rel=0.15)
    half = zoomed_crop(rng, stripes, 64, (0.5, 0.5))  # period 4: still resolved, but low-passed
    assert period(half) == pytest.approx(4, rel=0.15) and np.ptp(half) < 1.0
    for _ in range(20):
        c = zoomed_crop(rng, stripes, 48, (0.5, 2.0))
        assert c.shape == (48, 48) and c.dtype == np.float32 and 0.0 <= c.min() <= c.max() <= 1.0


def test_finetune_grows_context_branch_and_counts_measured_pixels(tmp_path):
    base = tmp_path / "base.safetensors"
    r = _run("train", "dlss", "--steps", 1, "--patch", 32, "--batch", 1, "--width", 6, "--out", base, "-q")
    assert r.exit_code == 0, r.output
    out = tmp_path / "ctx.safetensors"
    r = _run("train", "dlss", "--steps", 1, "--patch", 32, "--batch", 1, "--init", base, "--context", 1,
             "--out", out, "-q")
    assert r.exit_code == 0, r.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["config"] == {"width": 6, "blocks": 2, "context": 1}
    assert "all pixels" in card["loss"] and "+ 0.001)" in card["loss"] and card["fine_tuned_from"]["steps"] == 1
    _assert_user_error(_run("train", "dlss", "--steps", 1, "--loss-pixels", "some", "--out", tmp_path / "z.safetensors"))
    for floor in ("0", "-1", "2"):
        _assert_user_error(_run("train", "dlss", "--steps", 1, "--loss-floor", floor, "--out", tmp_path / "z.safetensors"))
    for blur in ("-1,2", "3,1", "0,9", "wide"):
        _assert_user_error(_run("train", "dlss", "--steps", 1, "--probe-blur", blur, "--out", tmp_path / "z.safetensors"))
    out2 = tmp_path / "blur.safetensors"
    r = _run("train", "dlss", "--steps", 1, "--patch", 32, "--batch", 1, "--width", 6, "--probe-blur", "1,3",
             "--loss-floor", "0.03", "--out", out2, "-q")
    assert r.exit_code == 0, r.output
    card = json.loads(out2.with_suffix(".json").read_text())
    assert "probe blur sigma 1-3 px" in card["training_data"] and "+ 0.03)" in card["loss"]


def test_masked_loss_all_pixels_counts_measured_errors():
    from emcs.dlss.supersample import features
    from emcs.train.dlss import masked_loss

    rng = np.random.default_rng(0)
    target = rng.random((32, 32)).astype(np.float32)
    noisy = target + 0.1 * rng.standard_normal((32, 32)).astype(np.float32)
    feats = torch.from_numpy(features(subsample(noisy, 4), 4, (32, 32)))[None]
    t = torch.from_numpy(target)[None, None]
    pred = t.clone()
    mask = feats[:, 2:3] > 0
    pred[mask] += 0.5  # wrong only at the measured pixels
    _, per_free = masked_loss(pred, t, feats, None)
    _, per_all = masked_loss(pred, t, feats, None, all_pixels=True)
    assert float(per_free) == 0.0 and float(per_all) > 0.0
    # a user's recorded scan is its own target: its measured pixels stay out of the loss
    _, per_rec = masked_loss(pred, t, feats, None, all_pixels=True, recorded=np.array([True]))
    assert float(per_rec) == 0.0


def test_probe_blur_range_smooths_the_synthetic_images():
    from emcs.simulate.textures import stem_texture

    def fine_detail(blur):  # mean squared difference of neighbouring pixels over 40 images
        rng = np.random.default_rng(3)
        return np.mean([np.mean(np.diff(stem_texture(rng, 64, blur), axis=1) ** 2) for _ in range(40)])

    sharp, default, oversampled = fine_detail((0.0, 0.0)), fine_detail((0.0, 1.5)), fine_detail((3.0, 3.0))
    assert sharp > default > 2 * oversampled
    img = stem_texture(np.random.default_rng(0), 48, (3.0, 3.0))
    assert img.shape == (48, 48) and img.dtype == np.float32 and img.min() == 0.0 and img.max() == 1.0


def test_loss_floor_weighs_noisy_patches_more():
    """Two patches, equally wrong: the floor sets how much more the clean one counts."""
    from emcs.dlss.supersample import features
    from emcs.train.dlss import masked_loss

    rng = np.random.default_rng(1)
    clean = np.add.outer(np.arange(32), np.arange(32)).astype(np.float32) / 62  # bilinear is exact here
    feats, targets = [], []
    for sigma in (0.0, 0.2):
        noisy = clean + sigma * rng.standard_normal((32, 32)).astype(np.float32)
        feats.append(features(subsample(noisy, 4), 4, (32, 32)))
        targets.append(clean[None])
    feats = torch.from_numpy(np.stack(feats))
    t = torch.from_numpy(np.stack(targets))
    pred = t + 0.05  # the same error on both patches
    pred.requires_grad_(True)

    def grad_ratio(floor):  # d loss / d pred, clean patch over noisy patch
        pred.grad = None
        loss, _ = masked_loss(pred, t, feats, None, floor=floor, all_pixels=True)
        loss.backward()
        g = pred.grad.abs().flatten(1).sum(1)
        return float(g[0] / g[1])

    r_default, r_large = grad_ratio(1e-3), grad_ratio(1e-1)
    assert r_default > 5.0  # per-patch normalisation: the clean patch dominates
    assert 1.0 < r_large < r_default / 3  # a large floor: close to a plain MSE


def test_user_scans_in_batches():
    from emcs.train.dlss import make_batch

    rng = np.random.default_rng(1)
    scan = rng.random((64, 64)).astype(np.float32)
    crops = lambda r, n: scan[:n, :n]  # noqa: E731
    x, y, s, rec = make_batch(rng, 4, 32, user_crops=crops, user_fraction=0.5)
    assert x.shape == (4, 4, 32, 32) and rec.tolist() == [True, True, False, False]
    # recorded: the target is the scan itself (up to the dihedral augmentation)
    assert all(np.isclose(np.sort(y[i].ravel()), np.sort(scan[:32, :32].ravel())).all() for i in range(2))
    x, y, s, rec = make_batch(rng, 4, 32, user_crops=crops, user_fraction=1.0, user_noise=True)
    assert not rec.any()  # taken as clean: the detector model makes the input, the scan is the target
    assert not np.allclose(x[:, 0], y[:, 0])


def test_lattice_scenes_in_batches(tmp_path, monkeypatch):
    import emcs.train.dlss as dlss

    drawn = []
    real = dlss.lattice_pair
    monkeypatch.setattr(dlss, "lattice_pair", lambda r, n: drawn.append(n) or real(r, n))
    rng = np.random.default_rng(2)
    crops = lambda r, n: r.random((n, n)).astype(np.float32)  # noqa: E731
    x, y, s, rec = dlss.make_batch(rng, 4, 32, user_crops=crops, user_fraction=0.25, lattice_fraction=0.5)
    assert x.shape == (4, 4, 32, 32) and drawn == [32, 32] and rec.tolist() == [True, False, False, False]
    dlss.make_batch(rng, 3, 32, lattice_fraction=1.0)
    assert len(drawn) == 5  # the whole batch
    out = tmp_path / "lat.safetensors"
    r = _run("train", "dlss", "--steps", 1, "--patch", 32, "--batch", 2, "--width", 6, "--lattice-fraction", 0.5,
             "--out", out, "-q")
    assert r.exit_code == 0, r.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert "lattice scenes with scan artefacts (emcs.simulate.lattices, 50% of each batch)" in card["training_data"]
    for bad in ("-0.1", "1.5"):
        _assert_user_error(_run("train", "dlss", "--steps", 1, "--lattice-fraction", bad, "--out", tmp_path / "z.safetensors"))


# --------------------------------------------------------------------------- SIM
def test_train_sim_cli_user_pairs_and_resume(tmp_path):
    rng = np.random.default_rng(0)
    wf = rng.random((2, 40, 40)).astype(np.float32)
    sr = rng.random((2, 80, 80)).astype(np.float32)
    write_stack(tmp_path / "wf.tif", wf)
    write_stack(tmp_path / "sr.tif", sr)
    out = tmp_path / "m.safetensors"
    base = ["train", "sim", "--out", str(out), "--channels", "8", "--blocks", "1", "--patch", "16",
            "--batch", "2", "--data-widefield", str(tmp_path / "wf.tif"), "--data-sr", str(tmp_path / "sr.tif"),
            "--checkpoint-every", "1", "--quiet"]
    r = CliRunner().invoke(app, base + ["--steps", "2"])
    assert r.exit_code == 0, r.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["steps_done"] == 2 and card["config"] == {"channels": 8, "blocks": 1}
    r = CliRunner().invoke(app, base + ["--steps", "3", "--resume"])
    assert r.exit_code == 0, r.output
    assert json.loads(out.with_suffix(".json").read_text())["training"]["steps_done"] == 3
    net, _ = load_network(out)
    assert net_frame(net, wf[0]).shape == (80, 80)
    # fine-tune from existing weights
    out2 = tmp_path / "ft.safetensors"
    r = CliRunner().invoke(app, [a if a != str(out) else str(out2) for a in base] + ["--steps", "1", "--init", str(out)])
    assert r.exit_code == 0, r.output


def test_train_sim_bad_pairs(tmp_path):
    write_stack(tmp_path / "wf.tif", np.zeros((2, 40, 40), np.float32))
    write_stack(tmp_path / "sr.tif", np.zeros((2, 40, 40), np.float32))
    r = CliRunner().invoke(app, ["train", "sim", "--out", str(tmp_path / "m.safetensors"),
                            "--data-widefield", str(tmp_path / "wf.tif"), "--data-sr", str(tmp_path / "sr.tif")])
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "does not pair" in lines[0]


def test_prefetch_workers_give_the_same_run(tmp_path):
    """--workers draws the batches in other processes: the same batches, so the same weights."""
    outs = []
    for workers in ("0", "2"):
        out = tmp_path / f"tcs-w{workers}.safetensors"
        res = _train_tiny(out, "--B", "4,6", "--steps", "3", "--workers", workers)
        assert res.exit_code == 0, res.output
        outs.append(out)
    from safetensors.numpy import load_file

    a, b = (load_file(str(o)) for o in outs)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    card = json.loads(outs[1].with_suffix(".json").read_text())
    assert card["training"]["options"]["workers"] == 2 and card["training"]["steps"] == 3


def test_prefetch_follows_a_jump_in_steps():
    from functools import partial

    from emcs.train.loop import Prefetch

    with Prefetch(partial(pow, 3), start=0, workers=1, ahead=2) as fetch:
        assert [fetch(0), fetch(1), fetch(5), fetch(6)] == [1, 3, 243, 729]


def test_fine_tune_grows_unfold_stages(tmp_path):
    base = tmp_path / "tcs-base.safetensors"
    assert _train_tiny(base, "--B", "4", "--steps", "2").exit_code == 0
    grown = tmp_path / "tcs-grown.safetensors"
    res = _train_tiny(grown, "--B", "4", "--steps", "1", "--stages", "3", "--resume", base, "--lr", "1e-12")
    assert res.exit_code == 0, res.output
    card = json.loads(grown.with_suffix(".json").read_text())
    assert card["config"]["stages"] == 3 and card["training"]["fine_tuned_from"]["stages"] == 1
    from emcs.nn.weights import load_model
    from emcs.tcs.nets import BUILDERS

    a, _ = load_model(base, BUILDERS)
    b, _ = load_model(grown, BUILDERS)
    y = torch.rand(1, 32, 32) * 2
    C = (torch.rand(1, 4, 32, 32) > 0.5).float()
    with torch.no_grad():
        xa, xb = a(y, C), b(y, C)
    # the added stages start as small GAP steps with a zero residual: close to the network grown from
    assert float((xa - xb).abs().max()) < 0.15 * float(xa.abs().max())
    shrink = _train_tiny(tmp_path / "tcs-s.safetensors", "--B", "4", "--steps", "1", "--stages", "1",
                         "--resume", grown)
    _assert_user_error(shrink)
    assert "stages can only grow" in shrink.stderr

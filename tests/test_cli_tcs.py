"""`emcs encode / decode / info` through Typer's CliRunner, incl. every bad-input path."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from emcs.cli import app
from emcs.io import read_stack
from emcs.tcs.container import load_container

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _one_line_error(result, *needles):
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("emcs: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_encode_decode_defaults_beside_input(write_movie, tmp_path):
    src, data = write_movie("run1.tif", T=13, H=16, W=12, pixel_size=1.5)
    r = _run("encode", src, "-B", 5, "--seed", 3)
    assert r.exit_code == 0, r.stderr
    assert "ratio" in r.stderr and "MB/s" in r.stderr
    assert (tmp_path / "run1.npz").exists()
    (tmp_path / "run1.tif").rename(tmp_path / "orig.tif")
    r = _run("decode", tmp_path / "run1.npz", "--iters", 3, "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    rec, info = read_stack(tmp_path / "run1.tif")
    assert rec.shape == data.shape and rec.dtype == np.float32  # the default --dtype
    assert info.pixel_size == pytest.approx(1.5)
    r = _run("decode", tmp_path / "run1.npz", "-o", tmp_path / "r.npy", "--iters", 3, "--dtype", "input",
             "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["dtype"] == "uint16" and json.loads(r.stdout)["input_dtype"] == "uint16"
    rounded = np.load(tmp_path / "r.npy")
    assert rounded.dtype == data.dtype
    # the same decode rounded (float32 output rounds the float64 values first: ties may differ by 1)
    diff = np.abs(rounded.astype(np.int64) - np.rint(rec).astype(np.int64))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99


def test_encode_json_several_inputs_and_info(write_movie, tmp_path):
    a, _ = write_movie("a.tif", T=7, H=8, W=8)
    b, _ = write_movie("b.npy", T=3, H=8, W=8, dtype=np.uint8)
    r = _run("encode", a, b, "--json", "-B", 4)
    assert r.exit_code == 0, r.stderr
    payload = json.loads(r.stdout)
    assert [x["output"] for x in payload["results"]] == [str(tmp_path / "a.npz"), str(tmp_path / "b.npz")]
    assert payload["results"][1]["n_measurements"] == 1
    assert isinstance(payload["results"][0]["seed"], int)  # random seed, recorded
    assert load_container(tmp_path / "a.npz").seed == payload["results"][0]["seed"]
    info = json.loads(_run("info", tmp_path / "a.npz", "--json").stdout)
    assert info["B"] == 4 and info["shape"] == [7, 8, 8] and info["ratio"] > 0
    assert info["format_version"] == 5 and info["seed"] == payload["results"][0]["seed"]
    r = _run("encode", a, "-o", tmp_path / "a-packed.npz", "--pack", "jpegxl", "--json", "-B", 4)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["measurement_codec"] == "jpegxl-lossless"
    packed = json.loads(_run("info", tmp_path / "a-packed.npz", "--json").stdout)
    assert packed["format_version"] == 5 and packed["measurement_codec"] == "jpegxl-lossless"
    r = _run("encode", a, "-o", tmp_path / "a-q.npz", "--pack", "zstd", "--quantize", 0.5, "--json", "-B", 4)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["measurement_quantization"]["step"] == 0.5
    r = _run("decode", tmp_path / "a-q.npz", "-o", tmp_path / "a-q.tif", "--method", "gap-tv", "--iters", 2, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert "Anscombe step 0.5" in _run("info", tmp_path / "a-q.npz").stderr
    r = _run("encode", a, "-o", tmp_path / "a-p.npz", "--quantize", 1, "--json", "-B", 4)  # packs predictively
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["measurement_codec"] == "mask-predictive"
    assert json.loads(_run("info", tmp_path / "a-p.npz", "--json").stdout)["format_version"] == 5
    stack = json.loads(_run("info", a, "--json").stdout)
    assert stack["shape"] == [7, 8, 8] and stack["dtype"] == "uint16"
    r = _run("info", tmp_path / "a.npz")
    assert r.exit_code == 0 and "ratio" in r.stderr


def test_explicit_mask_and_quiet(write_movie, tmp_path):
    src, _ = write_movie("m.tif", T=9, H=10, W=6)
    mask = (np.random.default_rng(0).random((4, 10, 6)) < 0.5).astype(np.uint8)
    np.save(tmp_path / "mask.npy", mask)
    r = _run("encode", src, "--mask", tmp_path / "mask.npy", "-o", tmp_path / "o.npz", "--quiet")
    assert r.exit_code == 0 and r.stderr == "" and r.stdout == ""
    c = load_container(tmp_path / "o.npz")
    assert c.B == 4 and c.counts.tolist() == [4, 4, 1]
    np.testing.assert_array_equal(c.masks(), mask.astype(bool))


def test_encode_bad_inputs(write_movie, tmp_path):
    src, _ = write_movie("s.tif", T=5, H=10, W=6)
    _one_line_error(_run("encode", tmp_path / "missing.tif"), "missing.tif", "no such file")
    (tmp_path / "text.tif").write_text("hello, not an image")
    _one_line_error(_run("encode", tmp_path / "text.tif"), "text.tif")
    (tmp_path / "s.npz").write_bytes(b"x")
    _one_line_error(_run("encode", src), "s.npz", "--force")
    _one_line_error(_run("encode", src, "-o", tmp_path / "x.npz", "-B", 0), "-B")
    _one_line_error(_run("encode", src, "-o", tmp_path / "x.npz", "-B", -2), "-B")
    _one_line_error(_run("encode", src, "-o", tmp_path / "x.npz", "--density", 1.5), "--density")
    _one_line_error(_run("encode", src, "-o", tmp_path / "x.npz", "--density", 0), "--density")
    _one_line_error(_run("encode", src, "-o", tmp_path / "x.npz", "--seed", -1), "--seed")
    _one_line_error(_run("encode", src, src, "-o", tmp_path / "x.npz"), "-o")
    np.save(tmp_path / "wrong.npy", np.ones((4, 9, 6), np.uint8))
    _one_line_error(_run("encode", src, "-o", tmp_path / "x.npz", "--mask", tmp_path / "wrong.npy"),
                    "wrong.npy", "(9, 6)")
    np.save(tmp_path / "gray.npy", np.full((4, 10, 6), 7, np.uint8))
    _one_line_error(_run("encode", src, "-o", tmp_path / "x.npz", "--mask", tmp_path / "gray.npy"),
                    "gray.npy", "not binary")
    np.save(tmp_path / "ok.npy", np.ones((4, 10, 6), np.uint8))
    _one_line_error(_run("encode", src, "-o", tmp_path / "x.npz", "--mask", tmp_path / "ok.npy", "-B", 5),
                    "-B")
    _one_line_error(_run("encode", src, "-o", tmp_path / "x.npz", "--mask", tmp_path / "nomask.npy"),
                    "nomask.npy", "no such file")
    _one_line_error(_run("encode", src, "-o", tmp_path / "nofolder" / "x.npz"), "does not exist")
    assert not (tmp_path / "x.npz").exists()


def test_decode_and_info_bad_inputs(write_movie, tmp_path):
    src, _ = write_movie("d.tif", T=5, H=10, W=6)
    assert _run("encode", src, "-B", 5).exit_code == 0
    c = tmp_path / "d.npz"
    _one_line_error(_run("decode", tmp_path / "nothere.npz"), "nothere.npz", "no such file")
    _one_line_error(_run("decode", c), "d.tif", "--force")
    _one_line_error(_run("decode", c, "-o", tmp_path / "r.tif", "--method", "magic"), "--method")
    _one_line_error(_run("decode", c, "-o", tmp_path / "r.tif", "--iters", 0), "--iters")
    _one_line_error(_run("decode", c, "-o", tmp_path / "r.tif", "--ensemble", 3), "--ensemble")
    _one_line_error(_run("decode", c, "-o", tmp_path / "r.tif", "--precision", "int4"), "--precision")
    _one_line_error(_run("encode", src, "-o", tmp_path / "p.npz", "--pack", "gzip"), "--pack")
    _one_line_error(_run("encode", src, "-o", tmp_path / "p.npz", "--quantize", 1, "--pack", "none"), "--pack")
    _one_line_error(_run("decode", c, "-o", tmp_path / "r.png"), "r.png")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 truncated")
    _one_line_error(_run("decode", tmp_path / "junk.npz", "-o", tmp_path / "r.tif"), "junk.npz")
    _one_line_error(_run("info", tmp_path / "junk.npz"), "junk.npz")
    _one_line_error(_run("info", tmp_path / "nothing.tif"), "no such file")
    assert not (tmp_path / "r.tif").exists()


def _fake_models(monkeypatch, find_model):
    """The decoder registry sees one fake network model, served for the groups ``find_model`` covers."""
    import emcs.tcs.decoders as decoders

    api = SimpleNamespace(find_model=lambda B, density, folder=None: find_model(B, density),
                          load_model_info=lambda name, folder=None: SimpleNamespace(name=name),
                          list_models=lambda folder=None: [],
                          resolve_precision=lambda precision, info, device: precision)
    monkeypatch.setattr(decoders, "_models", lambda: api)
    monkeypatch.setattr(decoders, "networks_unavailable", lambda: None)


def test_decode_net_is_an_error_auto_falls_back(write_movie, tmp_path, monkeypatch):
    """--method net that no network serves: exit 2; auto: GAP-TV with a note."""
    import emcs.tcs.decoders as decoders

    _fake_models(monkeypatch, lambda B, density: None)
    src, _ = write_movie("n.tif", T=4, H=8, W=8)
    assert _run("encode", src, "-B", 7, "-o", tmp_path / "n.npz").exit_code == 0
    r = _run("decode", tmp_path / "n.npz", "-o", tmp_path / "n_rec.npy", "--method", "net", "--iters", 2)
    _one_line_error(r, "n.npz", "B=7", "--method auto")
    assert not (tmp_path / "n_rec.npy").exists()
    r = _run("decode", tmp_path / "n.npz", "-o", tmp_path / "n_rec.npy", "--iters", 2, "--json")
    assert r.exit_code == 0, r.stderr
    assert "note" in r.stderr and "GAP-TV" in r.stderr and "B=7" in r.stderr
    out = json.loads(r.stdout)
    assert out["decoders"] == ["gap-tv"] and out["shape"] == [4, 8, 8]
    monkeypatch.setattr(decoders, "networks_unavailable", lambda: "the neural decoders are not available (test)")
    r = _run("decode", tmp_path / "n.npz", "-o", tmp_path / "n_rec2.npy", "--iters", 2)
    assert r.exit_code == 0 and "not available" in r.stderr and "warning" not in r.stderr
    r = _run("decode", tmp_path / "n.npz", "-o", tmp_path / "n_rec3.npy", "--method", "net")
    _one_line_error(r, "n.npz", "not available")


def test_decode_uses_a_network_when_one_covers_B(write_movie, tmp_path, monkeypatch):
    """auto: a covering network decodes the full groups, GAP-TV the short last one."""
    import emcs.tcs.nets.api as api
    from emcs.tcs.gaptv import naive_estimate

    calls = []

    def decode_measurements(y, operator, info, device, progress=None, ensemble=1, precision="auto"):
        calls.append((y.shape, operator.masks().shape, info.name, str(device), ensemble, precision))
        assert y.dtype == np.float32
        return naive_estimate(y, operator.masks())

    _fake_models(monkeypatch, lambda B, density: SimpleNamespace(name="fake-net") if B == 5 else None)
    monkeypatch.setattr(api, "decode_measurements", decode_measurements)
    src, data = write_movie("f.tif", T=12, H=8, W=6, dtype=np.uint8)
    assert _run("encode", src, "-B", 5, "--seed", 2).exit_code == 0
    r = _run("decode", tmp_path / "f.npz", "-o", tmp_path / "f.npy", "--device", "cpu", "--iters", 2, "--json",
             "--ensemble", 4, "--dtype", "input", "--precision", "float32")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["decoders"] == ["gap-tv", "net:fake-net"] and out["ensemble"] == 4
    assert out["precision"] == "float32"
    assert calls == [((2, 8, 6), (5, 8, 6), "fake-net", "cpu", 4, "float32")]
    rec = np.load(tmp_path / "f.npy")
    assert rec.shape == data.shape and rec.dtype == data.dtype
    c = load_container(tmp_path / "f.npz")
    naive = np.repeat(c.measurements[0][None] / np.maximum(c.masks().sum(0), 1), 5, 0)
    np.testing.assert_allclose(rec[:5], np.clip(np.rint(naive), data.min(), data.max()), atol=1)


def _standin_example(folder):
    """A tiny stand-in for examples/au_movie*.tif: noisy counts and their clean mean."""
    from emcs.io import write_stack

    folder.mkdir()
    yy, xx = np.mgrid[0:24, 0:24]
    clean = np.stack([8 + 5 * np.sin((xx + t) / 3.0) * np.cos(yy / 4.0) for t in range(12)]).astype(np.float32)
    write_stack(folder / "au_movie_truth.tif", clean, pixel_size=0.3)
    write_stack(folder / "au_movie.tif", np.random.default_rng(0).poisson(clean).astype(np.uint8), pixel_size=0.3)
    return folder


def test_demo_runs_and_refuses_to_overwrite(tmp_path, monkeypatch):
    monkeypatch.setenv("EMCS_EXAMPLES", str(_standin_example(tmp_path / "ex")))
    out = tmp_path / "demo"
    r = _run("demo", "-o", out, "--json")
    assert r.exit_code == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["shape"] == [12, 24, 24] and res["B"] == 10 and res["ratio"] > 1
    assert res["gaptv_psnr"] > res["raw_psnr"]
    for name in ("au_movie.npz", "au_movie_rec.tif", "demo.png"):
        assert (out / name).stat().st_size > 0
    _one_line_error(_run("demo", "-o", out), "--force")
    assert _run("demo", "-o", out, "--force", "--quiet").exit_code == 0


def test_demo_without_example_files(tmp_path, monkeypatch):
    monkeypatch.setenv("EMCS_EXAMPLES", str(tmp_path / "none"))
    _one_line_error(_run("demo", "-o", tmp_path / "d"), "au_movie.tif", "missing")


def test_info_check(write_movie, tmp_path):
    import io
    import zipfile

    src, _ = write_movie("k.tif", T=6, H=8, W=8)
    assert _run("encode", src, "-B", 3).exit_code == 0
    good = tmp_path / "k.npz"
    r = _run("info", good, "--check", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout) == {"path": str(good), "valid": True, "problems": []}
    with zipfile.ZipFile(good) as z:
        members = {n: z.read(n) for n in z.namelist()}
    meta = json.loads(np.load(io.BytesIO(members["meta.npy"])).tobytes())
    meta.pop("B")
    meta["mask"]["kind"] = "painted"
    buf = io.BytesIO()
    np.save(buf, np.frombuffer(json.dumps(meta).encode(), np.uint8))
    members["meta.npy"] = buf.getvalue()
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(bad, "w") as z:
        for name, raw in members.items():
            z.writestr(name, raw)
    r = _run("info", bad, "--check")
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith(f"emcs: {bad}: ") for line in lines)
    assert "lacks: B" in lines[0] and "mask kind 'painted'" in lines[1]

"""The CLI's common behaviour (issue #15, items 4-7): a bad input is one line and exit 2.

Wrong output suffixes, ``-`` for standard input/output, missing and wrong files,
boolean flags, several files with ``--keep-going``, ``info`` on several files,
``emcs models``, ``decode --model PATH`` of a network written by ``emcs train``,
one JSON vocabulary, the ``--dataset`` / ``--eer-*`` options.
"""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner
from vendor_files import write_eer, write_velox

from emcs.cli import app
from emcs.io import read_stack
from emcs.tcs.container import load_container

runner = CliRunner()


def _run(*args, stdin: bytes | None = None, env: dict | None = None):
    return runner.invoke(app, [str(a) for a in args], input=stdin, env=env)


def _one_line_error(result, *needles):
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("emcs: error: ") and "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def movie(write_movie):
    return write_movie("m.tif", T=8, H=12, W=10, pixel_size=2.0)[0]


@pytest.fixture
def container(movie, tmp_path):
    assert _run("encode", movie, "-B", 4, "--seed", 1, "-o", tmp_path / "m.npz").exit_code == 0
    return tmp_path / "m.npz"


# ----------------------------------------------------------------------------- outputs
@pytest.mark.parametrize("command, suffix", [
    ("encode", ".tif"), ("encode", ".npy"), ("decode", ".npz"), ("decode", ".png"),
    ("decode", ".txt"), ("supersample", ".npz"), ("subsample", ".jpg"), ("sim-recon", ".npz"),
])
def test_wrong_output_suffix_is_refused_before_any_work(command, suffix, movie, container, tmp_path):
    source = container if command == "decode" else movie
    out = tmp_path / f"out{suffix}"
    extra = ["--factor", 2] if command in ("subsample", "supersample") else []
    _one_line_error(_run(command, source, "-o", out, *extra), f"out{suffix}", "unsupported output")
    assert not out.exists()


def test_encode_stdout_and_stdin(movie, tmp_path):
    r = _run("encode", movie, "-B", 4, "--seed", 2, "-o", "-")
    assert r.exit_code == 0, r.stderr
    (tmp_path / "piped.npz").write_bytes(r.stdout_bytes)
    assert load_container(tmp_path / "piped.npz").B == 4
    r = _run("encode", "-", "-B", 4, "--seed", 2, "-o", tmp_path / "from_stdin.npz", "--json",
             stdin=movie.read_bytes())
    assert r.exit_code == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["input"] == "-" and res["shape"] == [8, 12, 10]
    assert load_container(tmp_path / "from_stdin.npz").pixel_size == pytest.approx(2.0)
    _one_line_error(_run("encode", "-", stdin=movie.read_bytes()), "-o")
    _one_line_error(_run("encode", movie, "-o", "-", "--json"), "--json")
    _one_line_error(_run("encode", "-", "-o", tmp_path / "x.npz", stdin=b"not an image at all"),
                    "-: unrecognised data")
    assert not (tmp_path / "-").exists()


def test_decode_stdin_stdout_and_frame_pattern(container, tmp_path):
    r = _run("decode", "-", "-o", "-", "--method", "gap-tv", "--iters", 2,
             stdin=container.read_bytes())
    assert r.exit_code == 0, r.stderr
    import tifffile

    rec = tifffile.imread(io.BytesIO(r.stdout_bytes))
    assert rec.shape == (8, 12, 10) and rec.dtype == np.float32
    (tmp_path / "frames").mkdir()
    pattern = tmp_path / "frames" / "f_%04d.png"
    _one_line_error(_run("decode", container, "-o", pattern, "--iters", 2), "--dtype input")
    r = _run("decode", container, "-o", pattern, "--iters", 2, "--dtype", "input", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["dtype"] == "uint16"
    assert sorted(p.name for p in (tmp_path / "frames").iterdir())[:2] == ["f_0000.png", "f_0001.png"]
    assert read_stack(str(pattern))[0].shape == (8, 12, 10)


# ----------------------------------------------------------------------------- bad inputs
def test_bad_inputs_are_one_line(movie, container, tmp_path):
    (tmp_path / "empty.tif").write_bytes(b"")
    (tmp_path / "text.tif").write_text("hello")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "folder").mkdir()
    for command in ("encode", "info"):
        _one_line_error(_run(command, tmp_path / "missing.tif"), "missing.tif", "no such file")
        _one_line_error(_run(command, tmp_path / "empty.tif"), "empty.tif")
        _one_line_error(_run(command, tmp_path / "text.tif"), "text.tif")
        _one_line_error(_run(command, tmp_path / "notes.txt"), "notes.txt")
        _one_line_error(_run(command, tmp_path / "folder"), "folder")
    _one_line_error(_run("encode", container), "m.npz", "container")
    _one_line_error(_run("decode", movie, "-o", tmp_path / "r.tif"), "m.tif")
    _one_line_error(_run("supersample", tmp_path / "missing.tif", "-o", tmp_path / "s.tif"),
                    "missing.tif", "no such file")
    _one_line_error(_run("decode", container, "-o", tmp_path / "r.tif", "--dtype", "int8"), "--dtype")
    _one_line_error(_run("decode", container, "-o", tmp_path / "r.tif", "--model", tmp_path / "no.safetensors"),
                    "no.safetensors")
    _one_line_error(_run("decode", container, "-o", tmp_path / "r.tif", "--model", "no-such-model"),
                    "--model")
    _one_line_error(_run("simulate", "sim", "-o", tmp_path / "s.tif", "--pixel-size", 3), "kind 'sim'")
    _one_line_error(_run("demo", "-o", "-"), "folder")
    _one_line_error(_run("train", "tcs", "--out", "-", "--steps", 1), "-", ".safetensors")


def test_booleans_are_flags(movie, tmp_path):
    r = _run("encode", "--help")
    assert "<bool>" not in r.stdout and "{" not in r.stdout.split("\n\n")[0]
    assert re.search(r"Usage: emcs encode \[OPTIONS\] INPUT\.\.\.", r.stdout)
    _one_line_error(_run("encode", movie, "--force", "true"),
                    "true: no such file", "flags")
    assert "--install-completion" in _run("--help").stdout


# ----------------------------------------------------------------------------- batches
def test_keep_going_finishes_the_rest(write_movie, tmp_path):
    a, _ = write_movie("a.tif", T=8, H=8, W=8)
    b, _ = write_movie("b.tif", T=8, H=8, W=8)
    missing = tmp_path / "gone.tif"
    r = _run("encode", a, missing, b, "-B", 4)
    _one_line_error(r, "gone.tif")
    assert not (tmp_path / "a.npz").exists()  # checked before any work
    r = _run("encode", a, missing, b, "-B", 4, "--keep-going", "--json")
    assert r.exit_code == 2
    assert (tmp_path / "a.npz").exists() and (tmp_path / "b.npz").exists()
    payload = json.loads(r.stdout)
    assert [x["input"] for x in payload["results"]] == [str(a), str(b)]
    assert len(payload["failures"]) == 1 and "gone.tif" in payload["failures"][0]
    assert "1 of 3 inputs failed" in r.stderr and "Traceback" not in r.stderr
    r = _run("decode", tmp_path / "a.npz", tmp_path / "gone.npz", tmp_path / "b.npz", "--keep-going",
             "--method", "gap-tv", "--iters", 2)
    assert r.exit_code == 2 and "gone.npz: no such file" in r.stderr
    assert (tmp_path / "a.tif").exists() and (tmp_path / "b.tif").exists()


def test_short_inputs_warn_about_unquoted_globs(write_movie, tmp_path):
    frames = [write_movie(f"f{k}.tif", T=1, H=8, W=8, seed=k)[0] for k in range(3)]
    r = _run("encode", *frames)
    assert r.exit_code == 0, r.stderr
    assert "3 of 3 inputs have fewer frames than B=10" in r.stderr and "quote" in r.stderr


def test_info_on_several_files_and_one_vocabulary(movie, tmp_path):
    r = _run("encode", movie, "-B", 3, "--seed", 4, "-o", tmp_path / "v.npz", "--json")
    enc = json.loads(r.stdout)
    r = _run("info", movie, tmp_path / "v.npz", "--json")
    assert r.exit_code == 0, r.stderr
    stack, info = json.loads(r.stdout)["results"]
    assert stack["kind"] == "stack" and stack["shape"] == [8, 12, 10] and stack["pixel_size"] == 2.0
    data, _ = read_stack(movie)
    assert stack["min"] == data.min() and stack["max"] == data.max()
    assert stack["mean"] == pytest.approx(data.mean())
    for key in ("shape", "dtype", "pixel_size", "B", "n_measurements", "last_group_frames", "seed",
                "density", "mask_kind", "measurement_dtype", "data_bytes", "container_bytes", "ratio"):
        assert enc[key] == info[key], key
    for old in ("output_bytes", "file_bytes", "counts_last", "input_shape", "input_bytes"):
        assert old not in enc and old not in info
    r = _run("info", movie)  # the human table: IMOD-header facts, one line each off a terminal
    assert "min / max / mean" in r.stderr and "tiff" in r.stderr


def test_summaries_do_not_wrap_off_a_terminal(write_movie, tmp_path):
    src, _ = write_movie("a_rather_long_file_name_for_a_movie_to_make_the_line_long.tif", T=8, H=8, W=8)
    r = _run("encode", src, "-B", 4)
    line = next(x for x in r.stderr.splitlines() if "->" in x)
    assert len(line) > 100 and line.endswith("MB/s")


# ----------------------------------------------------------------------------- models
def test_models_lists_all_capabilities():
    r = _run("models", "--json")
    assert r.exit_code == 0, r.stderr
    models = {m["name"]: m for m in json.loads(r.stdout)["models"]}
    assert {m["capability"] for m in models.values()} == {"tcs", "dlss", "sim"}
    assert models["tcs-unfold"]["serves"].startswith("B 10-30")
    assert models["dlss-unet-s4-10"]["serves"] == "s 4-10"
    assert all(m["source"] == "shipped" and m["parameters"] > 0 for m in models.values())
    _one_line_error(_run("models", "--capability", "xyz"), "--capability")


def test_decode_with_a_model_written_by_emcs_train(movie, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    user = tmp_path / "mine"
    user.mkdir()
    weights = user / "tiny.safetensors"
    r = _run("train", "tcs", "--model", "unfold", "--patch", 32, "--batch", 1, "--width", 8,
             "--stages", 1, "--B", 4, "--steps", 1, "--device", "cpu", "--quiet", "--out", weights)
    assert r.exit_code == 0, r.output
    r = _run("models", "--json", env={"EMCS_MODELS": str(user)})
    tiny = [m for m in json.loads(r.stdout)["models"] if m["name"] == "tiny"]
    assert tiny and tiny[0]["source"] == "EMCS_MODELS" and tiny[0]["serves"].startswith("B 4")
    assert _run("encode", movie, "-B", 4, "-o", tmp_path / "b4.npz").exit_code == 0
    for model in (weights, "tiny"):
        r = _run("decode", tmp_path / "b4.npz", "-o", tmp_path / "r.tif", "--model", model, "--force",
                 "--device", "cpu", "--json", env={"EMCS_MODELS": str(user)})
        assert r.exit_code == 0, r.stderr
        assert json.loads(r.stdout)["decoders"] == [f"net:{weights}"]
    assert _run("encode", movie, "-B", 6, "-o", tmp_path / "b6.npz").exit_code == 0
    _one_line_error(_run("decode", tmp_path / "b6.npz", "-o", tmp_path / "r6.tif", "--model", weights),
                    "not trained for B=6")


# ----------------------------------------------------------------------------- io options
def test_dataset_and_eer_options(tmp_path):
    rng = np.random.default_rng(0)
    haadf = rng.integers(0, 200, (6, 16, 16)).astype(np.uint16)
    write_velox(tmp_path / "v.emd", {"HAADF": haadf, "DF4": haadf[0].astype(np.float32) + 1000})
    r = _run("info", tmp_path / "v.emd", "--dataset", "DF4", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["shape"] == [1, 16, 16] and json.loads(r.stdout)["min"] >= 1000
    r = _run("encode", tmp_path / "v.emd", "--dataset", 0, "-B", 3, "-o", tmp_path / "v.npz", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["shape"] == [6, 16, 16]
    _one_line_error(_run("info", tmp_path / "v.emd", "--dataset", "BF"), "v.emd", "BF")
    fractions = (rng.random((8, 16, 16)) < 0.05).astype(np.uint8)
    write_eer(tmp_path / "e.eer", fractions)
    r = _run("info", tmp_path / "e.eer", "--eer-frames", 4, "--eer-upsampling", 2, "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["shape"] == [2, 32, 32]
    _one_line_error(_run("info", tmp_path / "e.eer", "--eer-upsampling", 3), "e.eer")


def test_a_bug_is_one_line_unless_debugging(movie, tmp_path, monkeypatch):
    import emcs.tcs.encode as encode

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(encode, "encode_stack", broken)
    _one_line_error(_run("encode", movie, "-o", tmp_path / "x.npz"), "unexpected RuntimeError: boom",
                    "EMCS_DEBUG=1")
    r = _run("encode", movie, "-o", tmp_path / "x.npz", env={"EMCS_DEBUG": "1"})
    assert isinstance(r.exception, RuntimeError)


def test_json_is_strict(tmp_path):
    np.save(tmp_path / "nan.npy", np.full((2, 4, 4), np.nan, np.float32))
    r = _run("info", tmp_path / "nan.npy", "--json")
    assert r.exit_code == 0, r.stderr
    stats = json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert stats["min"] == "nan" and stats["mean"] == "nan"

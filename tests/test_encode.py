"""Encoder exactness and encode -> decode round trips of shape, dtype, frame count, pixel size."""

from __future__ import annotations

import numpy as np
import pytest

from emcs.errors import EmcsError
from emcs.io import open_stack, read_stack
from emcs.tcs.container import load_container
from emcs.tcs.decode import decode_container, unscale_frames
from emcs.tcs.encode import encode_stack
from emcs.tcs.masks import make_masks
from emcs.tcs.operator import TcsOperator, accumulator_dtype, encode_group


def _direct_sums(data, masks, B):
    out = []
    for k in range(0, len(data), B):
        g = data[k : k + B].astype(np.float64)
        out.append((g * masks[: len(g)]).sum(0))
    return np.stack(out)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16", "uint32", "float16", "float32", "float64"])
def test_encode_group_is_exact(dtype):
    rng = np.random.default_rng(1)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        x = (rng.standard_normal((7, 9, 11)) * 100).astype(dt)
    else:
        info = np.iinfo(dt)
        x = rng.integers(info.min, int(info.max) + 1, (7, 9, 11), dtype=np.int64).astype(dt)
    c = rng.random((7, 9, 11)) < 0.5
    y = encode_group(x, c)
    ref = (x.astype(np.float64) * c).sum(0)
    assert y.dtype == accumulator_dtype(dt, 7)
    np.testing.assert_array_equal(y.astype(np.float64), ref)


def test_worst_case_sums_do_not_overflow():
    x = np.full((10, 4, 4), 255, np.uint8)
    c = np.ones((10, 4, 4), bool)
    assert encode_group(x, c).max() == 2550
    x16 = np.full((10, 4, 4), 65535, np.uint16)
    assert int(encode_group(x16, c).max()) == 655350


@pytest.mark.parametrize(
    "dtype, maxval, stored",
    [("uint8", 255, "uint16"), ("uint16", 1000, "uint16"), ("uint16", 65535, "uint32"), ("float32", 1.0, "float32")],
)
def test_encode_stack_exact_and_tight_dtype(write_movie, tmp_path, dtype, maxval, stored):
    src, _ = write_movie("a.npy", T=23, H=10, W=12, dtype=dtype)
    data = np.load(src)
    if np.dtype(dtype).kind in "iu":
        data = (np.random.default_rng(2).integers(0, maxval + 1, data.shape)).astype(dtype)
        data[0, 0, 0] = maxval
        data[1:10, 0, 0] = maxval  # a pixel that sums to ~B*max where the masks are open
        np.save(src, data)
    res = encode_stack(src, tmp_path / "a.npz", B=10, seed=4)
    c = load_container(tmp_path / "a.npz")
    ref = _direct_sums(data, make_masks(4, 10, 10, 12), 10)
    if np.dtype(dtype).kind == "f":
        ref = ref.astype(np.float32)
    np.testing.assert_array_equal(np.asarray(c.measurements, np.float64), ref)
    assert c.measurements.dtype == np.dtype(stored) == np.dtype(res["measurement_dtype"])
    assert res["ratio"] == pytest.approx(data.nbytes / (tmp_path / "a.npz").stat().st_size)


def test_scaling_inverts():
    rng = np.random.default_rng(0)
    x = rng.integers(100, 900, (4, 6, 6)).astype(np.uint16)
    c = rng.random((4, 6, 6)) < 0.5
    y = encode_group(x, c)
    lo, hi = 100, 899
    ys = TcsOperator.from_masks(c).scale_measurements(y[None], (lo, hi))
    xs = (x.astype(np.float64) - lo) / (hi - lo)
    np.testing.assert_allclose(ys[0], (xs * c).sum(0), atol=1e-5)
    np.testing.assert_array_equal(unscale_frames(xs, (lo, hi), np.uint16), x)


CASES = [
    ("movie.tif", "uint16", 23, 2.0),   # T not a multiple of B
    ("movie.tif", "uint8", 4, None),    # T < B
    ("movie.mrc", "int16", 1, 1.5),     # one frame
    ("movie.mrc", "float32", 12, 3.25),
    ("movie.npy", "uint8", 10, None),
    ("movie.npy", "float64", 11, None),
]


@pytest.mark.parametrize("name, dtype, T, pixel_size", CASES)
def test_round_trip_shape_dtype_frames(write_movie, tmp_path, name, dtype, T, pixel_size):
    src, data = write_movie(name, T=T, H=20, W=18, dtype=dtype, pixel_size=pixel_size)
    res = encode_stack(src, tmp_path / "c.npz", B=10, seed=9)
    assert res["n_measurements"] == -(-T // 10)
    for suffix in (".tif", ".npy") + ((".mrc",) if dtype in ("int16", "float32") else ()):
        out = tmp_path / f"rec{suffix}"
        summary = decode_container(tmp_path / "c.npz", out, method="gap-tv", iters=3, device="cpu")
        rec, info = read_stack(out)
        assert rec.shape == data.shape and rec.dtype == data.dtype
        assert summary["shape"] == list(data.shape)
        assert rec.min() >= data.min() and rec.max() <= data.max()
        if pixel_size is not None and suffix != ".npy":
            assert info.pixel_size == pytest.approx(pixel_size, rel=1e-4)
    with open_stack(src) as s:
        assert s.shape == (T, 20, 18)


def test_noise_estimate_picks_decoder_settings(tmp_path):
    from emcs.io import write_stack
    from emcs.tcs.decode import choose_noise_level

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32]
    smooth = (100 + 50 * np.sin(xx / 5.0) * np.cos(yy / 7.0))[None].repeat(10, 0)
    write_stack(tmp_path / "clean.npy", smooth.astype(np.float32))
    write_stack(tmp_path / "noisy.npy", rng.poisson(smooth / 10).astype(np.uint16))
    for name, level in (("clean", "low"), ("noisy", "high")):
        encode_stack(tmp_path / f"{name}.npy", tmp_path / f"{name}.npz", B=5, seed=1)
        c = load_container(tmp_path / f"{name}.npz")
        assert choose_noise_level(c)[0] == level
        assert choose_noise_level(c, "low")[0] == "low"


@pytest.mark.parametrize("pack, quantize", [("none", None), ("predictive", None), ("predictive", 1.0),
                                            ("jpegxl", None), ("zstd", 1.0)])
def test_reproducible_with_source_date_epoch(write_movie, tmp_path, monkeypatch, pack, quantize):
    """SOURCE_DATE_EPOCH fixes `created` and the zip time stamps: two encodes are byte-identical,
    whatever the number of threads summing the groups."""
    import zipfile

    src, _ = write_movie("r.tif", T=23, H=33, W=20, dtype=np.uint16)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    encode_stack(src, a, B=5, seed=3, pack=pack, quantize=quantize, threads=1)
    encode_stack(src, b, B=5, seed=3, pack=pack, quantize=quantize, threads=3)
    assert a.read_bytes() == b.read_bytes()
    c = load_container(a)
    assert c.meta["created"] == "2023-11-14T22:13:20Z"
    with zipfile.ZipFile(a) as z:
        assert {info.date_time for info in z.infolist()} == {(2023, 11, 14, 22, 13, 20)}
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(EmcsError, match="^SOURCE_DATE_EPOCH must be whole seconds"):
        encode_stack(src, tmp_path / "c.npz", B=5, seed=3, pack=pack, quantize=quantize)
    assert not (tmp_path / "c.npz").exists()


def test_threads_give_the_same_sums(write_movie, tmp_path):
    src, data = write_movie("t.npy", T=31, H=37, W=16, dtype=np.uint8)
    ref = _direct_sums(data, make_masks(5, 10, 37, 16), 10)
    for threads in (1, 2, 7, 64):  # more threads than rows: one row each
        encode_stack(src, tmp_path / f"{threads}.npz", B=10, seed=5, threads=threads)
        c = load_container(tmp_path / f"{threads}.npz")
        np.testing.assert_array_equal(np.asarray(c.measurements, np.float64), ref)
        assert c.meta["input"]["value_range"] == [int(data.min()), int(data.max())]
    for bad in (0, -1, 1.5):
        with pytest.raises(EmcsError, match="^threads must") as err:
            encode_stack(src, tmp_path / "x.npz", B=10, threads=bad)
        assert err.value.param == "threads"


def test_encoder_keeps_patterns_not_boolean_masks():
    op = TcsOperator.generated(seed=2, B=6, frame_shape=(9, 10))
    x = np.random.default_rng(0).integers(0, 200, (6, 9, 10)).astype(np.uint16)
    y = op.encode(x)
    assert op._full is None and 6 in op._counts  # the mask sum was taken from the same masks
    np.testing.assert_array_equal(y, (x.astype(np.int64) * make_masks(2, 6, 9, 10)).sum(0))
    np.testing.assert_array_equal(op.open_count(), make_masks(2, 6, 9, 10).sum(0))

"""TcsOperator: one forward model for the encoder, GAP-TV and the networks."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from emcs.tcs import operator as tcsop
from emcs.tcs.masks import MASK_ALGORITHM, make_masks, pack_masks
from emcs.tcs.operator import TcsOperator, accumulator_dtype

INT_DTYPES = ["bool", "uint8", "int8", "uint16", "int16", "uint32", "int32"]  # 64-bit sums may overflow


def _frames(dtype, shape, rng):
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return rng.random(shape) < 0.5
    if dt.kind == "f":
        return (rng.standard_normal(shape) * 100).astype(dt)
    info = np.iinfo(dt)
    lo, hi = int(info.min), int(info.max)
    return rng.integers(lo, hi, shape, dtype=np.int64, endpoint=True).astype(dt)


def _naive(x, masks):
    return (x.astype(object) * masks[: len(x)].astype(object)).sum(0)


@pytest.mark.parametrize("dtype", INT_DTYPES + ["float16", "float32", "float64"])
@pytest.mark.parametrize("n", [7, 3, 1])
def test_encode_is_the_exact_naive_sum(dtype, n):
    rng = np.random.default_rng(1)
    op = TcsOperator.generated(5, 7, (9, 11), 0.4)
    x = _frames(dtype, (n, 9, 11), rng)
    y = op.encode(x)
    if np.dtype(dtype).kind == "f":
        ref = (x.astype(np.float64) * op.masks(n)).sum(0)
        np.testing.assert_array_equal(y, ref)
        assert y.dtype == np.float64
        return
    assert y.dtype == accumulator_dtype(dtype, n)
    ref = _naive(x, op.masks())
    assert (y.astype(object) == ref).all()


def test_negative_int16_and_worst_cases():
    op = TcsOperator.from_masks(np.ones((10, 4, 4), bool))
    assert op.encode(np.full((10, 4, 4), -32768, np.int16)).min() == -327680
    assert op.encode(np.full((10, 4, 4), 255, np.uint8)).max() == 2550
    assert int(op.encode(np.full((10, 4, 4), 65535, np.uint16)).max()) == 655350


def test_encode_bool_and_uint8_input_agree():
    rng = np.random.default_rng(3)
    op = TcsOperator.generated(2, 6, (5, 7))
    x = rng.random((6, 5, 7)) < 0.5
    np.testing.assert_array_equal(op.encode(x), op.encode(x.astype(np.uint8)))
    np.testing.assert_array_equal(op.encode(x), tcsop.encode_group(x, op.masks()))


def test_encode_reuses_buffers():
    rng = np.random.default_rng(4)
    op = TcsOperator.generated(2, 6, (5, 7))
    acc = np.zeros((5, 7), accumulator_dtype(np.uint16, 6))
    scratch = np.empty((5, 7), np.uint16)
    for n in (6, 2):
        x = rng.integers(0, 65536, (n, 5, 7)).astype(np.uint16)
        y = op.encode(x, out=acc, scratch=scratch)
        assert y is acc
        np.testing.assert_array_equal(y, (x.astype(np.int64) * op.masks(n)).sum(0))


def test_float_forward_equals_integer_forward():
    rng = np.random.default_rng(5)
    op = TcsOperator.generated(9, 8, (6, 10))
    x = rng.integers(0, 256, (8, 6, 10)).astype(np.uint8)
    np.testing.assert_array_equal(op.forward(x.astype(np.float64)), op.encode(x))
    np.testing.assert_array_equal(op.forward(x[:3].astype(np.float64)), op.encode(x[:3]))


def test_float_forward_torch_matches_numpy():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    op = TcsOperator.generated(9, 8, (6, 10))
    x = rng.random((2, 8, 6, 10)).astype(np.float32)
    np.testing.assert_allclose(op.forward(torch.from_numpy(x)).numpy(), op.forward(x), rtol=1e-6)
    y = rng.random((2, 6, 10)).astype(np.float32)
    np.testing.assert_allclose(op.adjoint(torch.from_numpy(y)).numpy(), op.adjoint(y), rtol=0)
    np.testing.assert_allclose(op.normalized(torch.from_numpy(y)).numpy(), op.normalized(y), rtol=1e-6)


@pytest.mark.parametrize("n", [8, 5])
def test_adjoint_is_the_transpose(n):
    rng = np.random.default_rng(7)
    op = TcsOperator.generated(11, 8, (12, 9), 0.3)
    x = rng.standard_normal((n, 12, 9))
    y = rng.standard_normal((12, 9))
    lhs = float((op.forward(x) * y).sum())
    rhs = float((x * op.adjoint(y, n)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-12)
    # A A^T = diag(R)
    np.testing.assert_allclose(op.forward(op.adjoint(y, n)), op.open_count(n) * y)


@pytest.mark.parametrize("n", [10, 4])
def test_row_block_mask_sums_equal_full_ones(monkeypatch, n):
    monkeypatch.setattr(tcsop, "_CHUNK_BYTES", 3 * n * 17)  # 3 rows per block
    op = TcsOperator.generated(3, 10, (20, 17), 0.6)
    full = make_masks(3, 10, 20, 17, 0.6)[:n]
    counts = op.open_count(n)
    assert op._full is None  # made in row blocks, the full masks were never built
    np.testing.assert_array_equal(counts, full.sum(0))
    assert counts.dtype == np.uint8
    np.testing.assert_array_equal(op.mask_sum(n), np.maximum(full.sum(0), 1))
    assert op.open_count(n) is counts  # cached


def test_mask_blocks_are_the_same_made_alone_or_cut_from_the_kept_full_masks():
    op = TcsOperator.generated(3, 10, (20, 17), 0.6)
    alone = op.masks(4, rows=(5, 12), cols=(2, 9))
    assert op._full is None  # a block alone does not build the full masks
    full = op.masks()
    cut = op.masks(4, rows=(5, 12), cols=(2, 9))
    np.testing.assert_array_equal(cut, alone)
    assert np.shares_memory(cut, full)  # cut from the kept masks, not made again


def test_mask_sum_is_division_safe_and_open_count_keeps_zeros():
    masks = np.zeros((3, 2, 2), bool)
    masks[:, 0, 0] = True
    op = TcsOperator.from_masks(masks)
    assert op.open_count().tolist() == [[3, 0], [0, 0]]
    assert op.mask_sum().tolist() == [[3, 1], [1, 1]]
    np.testing.assert_array_equal(op.normalized(np.full((2, 2), 6.0)), [[2.0, 6.0], [6.0, 6.0]])
    assert tcsop.open_count(np.ones((300, 1, 1), bool)).dtype == np.uint16


def test_constructors_agree():
    masks = make_masks(21, 6, 8, 9, 0.5)
    gen = TcsOperator.generated(21, 6, (8, 9))
    meta = {"kind": "generated", "algorithm": MASK_ALGORITHM, "seed": 21, "density": 0.5}
    from_meta = TcsOperator.from_meta(meta, None, 6, (8, 9))
    explicit = TcsOperator.from_masks(masks)
    packed = TcsOperator.from_meta(explicit.meta, pack_masks(masks), 6, (8, 9))
    for op in (gen, from_meta, explicit, packed):
        np.testing.assert_array_equal(op.masks(), masks)
        np.testing.assert_array_equal(op.masks(4, rows=(2, 5), cols=(1, 7)), masks[:4, 2:5, 1:7])
        np.testing.assert_array_equal(op.open_count(4), masks[:4].sum(0))
        g = op.group(4)
        assert g.B == 4 and op.group(4) is g and op.group(6) is op
        np.testing.assert_array_equal(g.masks(), masks[:4])
    assert gen.kind == "generated" and explicit.kind == "explicit"
    assert explicit.density == pytest.approx(masks.mean())


def test_pickle_round_trip():
    masks = make_masks(4, 5, 6, 7)
    for op in (TcsOperator.generated(4, 5, (6, 7)), TcsOperator.from_masks(masks)):
        op.open_count(3)
        op.patterns(np.uint16)
        back = pickle.loads(pickle.dumps(op))
        assert back.B == 5 and back.frame_shape == (6, 7) and back.meta == op.meta
        assert 3 in back._counts and not back._patterns
        np.testing.assert_array_equal(back.masks(), masks)
        x = np.arange(5 * 6 * 7, dtype=np.uint16).reshape(5, 6, 7)
        np.testing.assert_array_equal(back.encode(x), op.encode(x))
    assert len(pickle.dumps(TcsOperator.generated(4, 5, (600, 700)))) < 1000


def test_scales_match_the_decoders_semantics():
    rng = np.random.default_rng(9)
    op = TcsOperator.generated(1, 6, (8, 8))
    y = (rng.random((8, 8)) * 5).astype(np.float32)
    r = np.maximum(op.masks().sum(0, dtype=np.int32), 1)
    assert op.measurement_scale(y) == max(float((y / r).mean()), 1e-3)
    assert tcsop.measurement_scale(y, op.masks()) == op.measurement_scale(y)
    assert op.measurement_scale(np.zeros((8, 8), np.float32)) == 1e-3
    yi = op.encode(rng.integers(100, 900, (4, 8, 8)).astype(np.uint16))
    ref = ((yi.astype(np.float64) - 100 * op.masks(4).sum(0)) / 799).astype(np.float32)
    np.testing.assert_array_equal(op.scale_measurements(yi, (100, 899), 4), ref)


@pytest.mark.parametrize("lead", [(), (3,)])
def test_scaled_measurements_in_row_strips_equal_the_whole_frame_formula(monkeypatch, lead):
    monkeypatch.setattr(tcsop, "_CHUNK_BYTES", 8 * 17 * 4 * max(1, len(lead) * 3))
    assert tcsop._strip_rows(lead + (22, 17), 8) == 4  # 4 rows a strip: 6 strips, the last of 2 rows
    rng = np.random.default_rng(4)
    op = TcsOperator.generated(2, 5, (22, 17))
    y = rng.integers(0, 4000, lead + (22, 17)).astype(np.uint16)
    ref = ((y.astype(np.float64) - 12.5 * op.open_count().astype(np.int64)) / 987.5).astype(np.float32)
    got = op.scale_measurements(y, (12.5, 1000))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, ref)


def test_bad_groups_are_refused():
    op = TcsOperator.generated(1, 4, (3, 3))
    with pytest.raises(ValueError):
        op.masks(5)
    with pytest.raises(ValueError):
        op.group(0)
    with pytest.raises(ValueError):
        TcsOperator.generated(2**32, 4, (3, 3))


def test_encoder_operator_gaptv_and_unfold_agree_on_the_forward_model():
    """One forward model: the encoder (exact), the operator, GAP-TV and tcs-unfold."""
    torch = pytest.importorskip("torch")
    from emcs.tcs import gaptv
    from emcs.tcs.nets import unfold
    from emcs.tcs.nets.unfold import UnfoldNet

    assert gaptv.forward is tcsop.forward and unfold.tcs_forward is tcsop.forward
    rng = np.random.default_rng(12)
    op = TcsOperator.generated(31, 6, (18, 22), 0.5)
    counts = rng.integers(0, 4000, (6, 18, 22)).astype(np.uint16)
    y = op.encode(counts)
    x64 = counts.astype(np.float64)
    np.testing.assert_array_equal(op.forward(x64), y)  # integers: exact
    np.testing.assert_array_equal(tcsop.forward(torch.from_numpy(x64), op.tensor(dtype=torch.float64)).numpy(), y)
    # GAP-TV with a vanishing TV weight and one plain projection lands on {x : A x = y}
    ys = (y / 4000.0).astype(np.float32)[None]
    rec = gaptv.gap_tv(ys, op, iters=1, weight=1e-9, accelerate=False)
    np.testing.assert_allclose(op.forward(rec), ys, rtol=1e-5, atol=1e-5)
    # tcs-unfold with its denoisers at their zero start and a full step does the same
    net = UnfoldNet(stages=1, width=4)
    with torch.no_grad():
        net.step.fill_(40.0)  # sigmoid(40) = 1 in float32
        out = net(torch.from_numpy(ys), op.tensor()[None]).numpy()
    np.testing.assert_allclose(op.forward(out), ys, rtol=1e-5, atol=1e-5)

"""Measurement container: round trip, API for decoders, refusal of bad files."""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from emcs.errors import EmcsError
from emcs.io import write_stack
from emcs.tcs.container import FORMAT_VERSION, MEMBERS_VERSION, load_container, smallest_int_dtype
from emcs.tcs.encode import encode_stack
from emcs.tcs.masks import MASK_ALGORITHM, make_masks


@pytest.fixture
def container(write_movie, tmp_path):
    src, data = write_movie("m.tif", T=13, H=16, W=12, dtype=np.uint16, pixel_size=2.5)
    out = tmp_path / "m.npz"
    encode_stack(src, out, B=5, seed=77)
    return out, data


OLD = Path(__file__).parent / "data" / "old_containers"


def _old_movie():
    """The movie the stored old-format containers (tests/data/old_containers, written by emcs
    before format version 5: v1 plain, v2 --pack jpegxl, v3 --pack zstd --quantize 1,
    v4 --pack predictive; B = 5, seed 77) were encoded from."""
    return np.random.default_rng(2026).poisson(6.0, (13, 16, 12)).astype(np.uint16)


def _data_offset(path, name):
    """Offset in the file of the first byte after the .npy header of the stored member ``name``."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(name)
        with z.open(name) as f:
            np.lib.format.read_magic(f)
            np.lib.format.read_array_header_1_0(f)
            header = f.tell()
    raw = Path(path).read_bytes()
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
    return info.header_offset + 30 + name_len + extra_len + header


def _flip(path, dst, offset):
    raw = bytearray(Path(path).read_bytes())
    raw[offset] ^= 0xFF
    Path(dst).write_bytes(bytes(raw))
    return dst


def _rewrite(src, dst, edit_meta=None, drop=(), replace=None):
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    if edit_meta is not None:
        meta = json.loads(np.load(io.BytesIO(members["meta.npy"])).tobytes())
        edit_meta(meta)
        buf = io.BytesIO()
        np.save(buf, np.frombuffer(json.dumps(meta).encode(), np.uint8))
        members["meta.npy"] = buf.getvalue()
    members.update(replace or {})
    with zipfile.ZipFile(dst, "w") as z:
        for name, raw in members.items():
            if name not in drop:
                z.writestr(name, raw)
    return dst


def test_round_trip_attributes(container):
    path, data = container
    c = load_container(path)
    assert c.measurements.shape == (3, 16, 12)
    assert c.meta["measurement_codec"] == "npy" and "measurement_sha256" not in c.meta
    assert c.counts.tolist() == [5, 5, 3]
    assert c.B == 5 and c.input_dtype == np.uint16 and c.input_shape == (13, 16, 12)
    assert c.value_range == (float(data.min()), float(data.max()))
    assert c.pixel_size == pytest.approx(2.5)
    assert c.format_version == MEMBERS_VERSION and c.seed == 77
    assert c.meta["mask"]["algorithm"] == MASK_ALGORITHM
    np.testing.assert_array_equal(c.masks(), make_masks(77, 5, 16, 12))
    np.testing.assert_array_equal(c.masks(rows=(2, 9), cols=(3, 12)), make_masks(77, 5, 16, 12)[:, 2:9, 3:])
    assert c.group_frames(2) == (10, 13)
    assert c.ratio == pytest.approx(13 * 16 * 12 * 2 / path.stat().st_size)
    # a plain numpy user can open it without pickle (one member per measurement, each narrowest)
    with np.load(path, allow_pickle=False) as z:
        for k in range(3):
            np.testing.assert_array_equal(z[f"measurements/{k:08d}"], c.measurements[k])
        assert json.loads(z["meta"].tobytes())["B"] == 5


def test_plain_single_member_is_memory_mapped_and_crc_checked(container, tmp_path):
    path, data = container
    src = str(path).replace(".npz", ".tif")
    wide = tmp_path / "wide.npz"
    encode_stack(src, wide, B=5, seed=77, narrow=False)  # one member, written once, mappable
    c = load_container(wide)
    assert isinstance(c.measurements, np.memmap) and c.format_version == MEMBERS_VERSION
    assert c.measurements.dtype == np.uint32 and "measurement_codec" not in c.meta
    np.testing.assert_array_equal(c.measurements, load_container(path).measurements[:])
    with pytest.raises(EmcsError, match="checksum mismatch"):  # the CRC-32, checked on the mapped bytes
        load_container(_flip(wide, tmp_path / "flip.npz", _data_offset(wide, "measurements.npy") + 5))


def test_explicit_mask_is_stored_packed(write_movie, tmp_path):
    src, _ = write_movie("e.npy", T=7, H=9, W=11, dtype=np.uint8)
    mask = np.random.default_rng(3).random((4, 9, 11)) < 0.4
    encode_stack(src, tmp_path / "e.npz", masks=mask, mask_source="hw.npy")
    c = load_container(tmp_path / "e.npz")
    assert c.mask_kind == "explicit" and c.B == 4 and c.counts.tolist() == [4, 3]
    np.testing.assert_array_equal(c.masks(), mask)
    assert c.density == pytest.approx(mask.mean())


def test_narrowest_dtype():
    assert smallest_int_dtype(0, 255) == np.uint8
    assert smallest_int_dtype(0, 2550) == np.uint16
    assert smallest_int_dtype(-1, 40000) == np.int32


def test_refuses_pickled_member(container, tmp_path):
    path, _ = container
    buf = io.BytesIO()
    np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    bad = _rewrite(path, tmp_path / "p.npz", replace={"measurements/00000001.npy": buf.getvalue()})
    with pytest.raises(EmcsError, match="pickle"):
        load_container(bad)
    bad1 = _rewrite(OLD / "v1.npz", tmp_path / "p1.npz", replace={"measurements.npy": buf.getvalue()})
    with pytest.raises(EmcsError, match="pickle"):
        load_container(bad1)
    bad2 = _rewrite(path, tmp_path / "p2.npz", replace={"meta.npy": buf.getvalue()})
    with pytest.raises(EmcsError, match="pickle"):
        load_container(bad2)


def test_refuses_bad_checksum(write_movie, tmp_path):
    src, _ = write_movie("big.tif", T=20, H=64, W=64, dtype=np.uint16)
    path = tmp_path / "big.npz"
    encode_stack(src, path, B=5, seed=1)
    bad = _flip(path, tmp_path / "c.npz", _data_offset(path, "measurements/00000002.npy") + 10)
    with pytest.raises(EmcsError, match="checksum mismatch"):  # the member's zip CRC-32
        load_container(bad)
    with pytest.raises(EmcsError, match="checksum mismatch"):
        load_container(bad, verify=False).measurements[2]  # checked on every read, too


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_old_format_containers_still_read(tmp_path, version):
    """Containers written before format version 5 (stored in tests/data) load, verify their
    sha256 and give the same values as a new encode of the same movie."""
    from emcs.tcs.container import anscombe_values, validate

    path = OLD / f"v{version}.npz"
    src = tmp_path / "m.tif"
    write_stack(src, _old_movie())
    encode_stack(src, tmp_path / "new.npz", B=5, seed=77)
    new = np.asarray(load_container(tmp_path / "new.npz").measurements)
    c = load_container(path)
    assert c.format_version == version and c.verified and validate(path) == []
    old = np.asarray(c.measurements)
    if version == 3:  # quantized: the codes of the same sums
        np.testing.assert_array_equal(old, anscombe_values(anscombe_codes_of(new), 1.0))
    else:
        np.testing.assert_array_equal(old, new)
        assert old.dtype == new.dtype
    if version == 1:  # the sha256 still catches a flipped bit in the mapped member
        bad = _flip(path, tmp_path / "flip.npz", _data_offset(path, "measurements.npy") + 3)
        with pytest.raises(EmcsError, match="checksum mismatch"):
            load_container(bad)
        assert validate(bad)[0].startswith("checksum mismatch")
        lacking = _rewrite(path, tmp_path / "f.npz", edit_meta=lambda m: m.pop("measurement_sha256"))
        with pytest.raises(EmcsError, match="lacks"):
            load_container(lacking)


def anscombe_codes_of(y):
    from emcs.tcs.container import anscombe_codes

    return anscombe_codes(y, 1.0)


def test_refuses_corrupted_small_member(container, tmp_path):
    path, _ = container
    bad = _flip(path, tmp_path / "s.npz", _data_offset(path, "measurements/00000000.npy") + 3)
    with pytest.raises(EmcsError, match="checksum mismatch"):
        load_container(bad)


def test_refuses_newer_version(container, tmp_path):
    path, _ = container
    bad = _rewrite(path, tmp_path / "v.npz", edit_meta=lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(EmcsError, match="newer"):
        load_container(bad)


def test_refuses_truncated_and_garbage(container, tmp_path):
    path, _ = container
    raw = path.read_bytes()
    (tmp_path / "t.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(EmcsError, match="corrupt or truncated"):
        load_container(tmp_path / "t.npz")
    (tmp_path / "g.npz").write_bytes(b"not a zip at all" * 10)
    with pytest.raises(EmcsError):
        load_container(tmp_path / "g.npz")
    with pytest.raises(EmcsError, match="no such file"):
        load_container(tmp_path / "missing.npz")


@pytest.mark.parametrize("field", ["measurement_checksum", "B", "mask"])
def test_refuses_missing_field(container, tmp_path, field):
    path, _ = container
    bad = _rewrite(path, tmp_path / "f.npz", edit_meta=lambda m: m.pop(field))
    with pytest.raises(EmcsError, match="lacks|checksum"):
        load_container(bad)


def test_refuses_missing_member_and_inconsistency(container, tmp_path):
    path, _ = container
    with pytest.raises(EmcsError, match="counts.npy"):
        load_container(_rewrite(path, tmp_path / "nocounts.npz", drop=("counts.npy",)))
    bad = _rewrite(path, tmp_path / "i.npz", edit_meta=lambda m: m["input"].update(shape=[99, 16, 12]))
    with pytest.raises(EmcsError, match="inconsistent"):
        load_container(bad)


def test_deflated_container_still_loads(container, tmp_path):
    path, _ = container
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    dst = tmp_path / "d.npz"
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
        for name, raw in members.items():
            z.writestr(name, raw)
    c = load_container(dst)
    np.testing.assert_array_equal(c.measurements, load_container(path).measurements)


# --------------------------------------------------------------------------- packed (format version 2)
@pytest.mark.parametrize(
    "dtype, scale, suffix",
    [
        (np.uint8, 20, ".jxl"),  # sums fit uint8/uint16: lossless JPEG XL
        (np.uint16, 60000, ".npy.zst"),  # sums need uint32: zstd of the measurement's .npy
        (np.float32, 1.0, ".npy.zst"),
    ],
)
def test_packed_round_trip_is_exact(write_movie, tmp_path, dtype, scale, suffix):
    rng = np.random.default_rng(4)
    data = (rng.poisson(3.0, (13, 24, 20)) * scale / 10).astype(dtype)
    src = tmp_path / "p.tif"
    write_stack(src, data)
    plain, packed = tmp_path / "plain.npz", tmp_path / "packed.npz"
    encode_stack(src, plain, B=5, seed=9)
    res = encode_stack(src, packed, B=5, seed=9, pack="jpegxl")
    a, b = load_container(plain), load_container(packed)  # verify=True reads every member (zip CRC-32)
    codec = "zstd-npy" if np.dtype(dtype).kind == "f" else "jpegxl-lossless"
    assert b.format_version == MEMBERS_VERSION and b.meta["measurement_codec"] == codec == res["measurement_codec"]
    with zipfile.ZipFile(packed) as z:
        assert {n[len("measurements/00000000"):] for n in z.namelist() if n.startswith("measurements/")} == {suffix}
    assert b.measurements.shape == a.measurements.shape and b.measurements.dtype == a.measurements.dtype
    np.testing.assert_array_equal(np.asarray(b.measurements), a.measurements)
    np.testing.assert_array_equal(b.measurements[1:3], a.measurements[1:3])
    np.testing.assert_array_equal(b.measurements[-1], a.measurements[-1])
    assert b.summary()["measurement_codec"] == codec


def test_packed_counts_are_smaller_and_decode_identically(write_movie, tmp_path):
    from emcs.tcs.decode import decode_container

    rng = np.random.default_rng(5)
    data = rng.poisson(40.0, (20, 64, 64)).astype(np.uint16)  # noisy camera counts
    src = tmp_path / "c.tif"
    write_stack(src, data)
    plain, packed = tmp_path / "plain.npz", tmp_path / "packed.npz"
    encode_stack(src, plain, B=10, seed=3)
    encode_stack(src, packed, B=10, seed=3, pack="jpegxl")
    assert load_container(packed).ratio > 1.25 * load_container(plain).ratio
    for p in (plain, packed):
        decode_container(p, tmp_path / f"{p.stem}.npy", method="gap-tv", iters=3)
    np.testing.assert_array_equal(np.load(tmp_path / "plain.npy"), np.load(tmp_path / "packed.npy"))


def _packed_and_corrupted(write_movie, tmp_path, pack, dtype):
    """A packed container of a small movie, and a copy whose member 1 ends in garbage."""
    from emcs.tcs.container import CODECS, packed_codec

    src, _ = write_movie("q.tif", T=10, H=16, W=16, dtype=dtype)
    path = tmp_path / "q.npz"
    encode_stack(src, path, B=5, seed=1, pack=pack)
    member = "measurements/00000001" + CODECS[packed_codec(pack, load_container(path).measurements.stored_dtype)]
    with zipfile.ZipFile(path) as z:
        good = z.read(member)
    bad = _rewrite(path, tmp_path / "bad.npz", replace={member: good[:-6] + b"xxxxxx"})
    return src, path, member, bad


def test_packed_refuses_corrupt_or_missing_members(write_movie, tmp_path):
    src, path, member, bad = _packed_and_corrupted(write_movie, tmp_path, "zstd", np.uint8)
    with pytest.raises(EmcsError, match="corrupt|checksum"):
        load_container(bad)
    gone = _rewrite(path, tmp_path / "gone.npz", drop=(member,))
    with pytest.raises(EmcsError, match="missing"):
        load_container(gone)
    odd = _rewrite(path, tmp_path / "odd.npz", edit_meta=lambda m: m.update(measurement_codec="lzma"))
    with pytest.raises(EmcsError, match="codec"):
        load_container(odd)
    with pytest.raises(EmcsError, match="^pack must be one of") as err:
        encode_stack(src, tmp_path / "x.npz", B=5, pack="gzip")
    assert err.value.param == "pack"


def test_quantized_counts_stay_within_their_shot_noise(tmp_path):
    from emcs.tcs.container import anscombe_codes, anscombe_values

    rng = np.random.default_rng(6)
    data = rng.poisson(rng.uniform(0, 200, (1, 48, 40)), (20, 48, 40)).astype(np.uint16)
    src = tmp_path / "q.tif"
    write_stack(src, data)
    packed, quant = tmp_path / "packed.npz", tmp_path / "quant.npz"
    encode_stack(src, packed, B=10, seed=3, pack="jpegxl")
    res = encode_stack(src, quant, B=10, seed=3, pack="jpegxl", quantize=1.0)
    a, b = load_container(packed), load_container(quant)  # verify=True checks the codes' sha256
    assert b.format_version == MEMBERS_VERSION and res["measurement_quantization"]["step"] == 1.0
    assert b.meta["measurement_quantization"]["counts_range"] == a.meta["measurement_range"]
    ya, yb = np.asarray(a.measurements, np.float64), np.asarray(b.measurements)
    assert yb.dtype == np.float32 and yb.shape == ya.shape
    # the error of each sum is at most half a step of its own shot noise (+ float rounding)
    err = np.abs(yb - ya) / np.sqrt(ya + 0.375)
    assert err.max() <= 0.5 + 1e-3 and 0.04 < np.mean(err**2) < 0.13  # ~ step^2 / 12
    np.testing.assert_array_equal(b.measurements[1], yb[1])
    assert b.ratio > 1.3 * a.ratio
    assert b.summary()["measurement_quantization"]["kind"] == "anscombe"
    y = np.arange(0, 3000)
    np.testing.assert_array_equal(anscombe_codes(anscombe_values(anscombe_codes(y, 0.5), 0.5), 0.5),
                                  anscombe_codes(y, 0.5))  # codes are a fixed point


def test_quantize_refusals(write_movie, tmp_path):
    src, _ = write_movie("f.tif", T=10, H=16, W=16, dtype=np.float32)
    with pytest.raises(EmcsError, match="integer counts"):
        encode_stack(src, tmp_path / "f.npz", B=5, pack="zstd", quantize=1.0)
    isrc, _ = write_movie("i.tif", T=10, H=16, W=16, dtype=np.uint8)
    with pytest.raises(EmcsError, match="pack must be predictive, jpegxl or zstd to quantize"):
        encode_stack(isrc, tmp_path / "i.npz", B=5, pack="none", quantize=1.0)
    with pytest.raises(EmcsError, match="step"):
        encode_stack(isrc, tmp_path / "i.npz", B=5, pack="zstd", quantize=0.0)
    neg = tmp_path / "neg.tif"
    write_stack(neg, np.full((10, 16, 16), -3, np.int16))
    with pytest.raises(EmcsError, match="non-negative"):
        encode_stack(neg, tmp_path / "neg.npz", B=5, pack="zstd", quantize=1.0)
    assert not (tmp_path / "neg.npz").exists()
    good = tmp_path / "g.npz"
    encode_stack(isrc, good, B=5, seed=1, pack="zstd", quantize=1.0)
    odd = _rewrite(good, tmp_path / "odd.npz",
                   edit_meta=lambda m: m.update(measurement_quantization={"kind": "log", "step": 1}))
    with pytest.raises(EmcsError, match="quantization"):
        load_container(odd)
    old = _rewrite(OLD / "v3.npz", tmp_path / "old.npz", edit_meta=lambda m: m.update(format_version=2))
    with pytest.raises(EmcsError, match="version 3"):
        load_container(old)
    older = _rewrite(good, tmp_path / "older.npz", edit_meta=lambda m: m.update(format_version=4))
    with pytest.raises(EmcsError, match="cannot have zstd-npy members"):
        load_container(older)


# --------------------------------------------------------------------------- mask-predictive (format version 4)
@pytest.mark.parametrize("dtype, lam", [(np.uint8, 2.0), (np.uint16, 300.0), (np.int16, 5.0)])
@pytest.mark.parametrize("explicit", [False, True])
def test_predictive_round_trip_is_exact(tmp_path, dtype, lam, explicit):
    rng = np.random.default_rng(11)
    data = rng.poisson(lam, (23, 19, 26)).astype(dtype)  # odd sizes, a short last group (3 frames)
    if np.dtype(dtype).kind == "i":
        data -= 4  # signed counts below zero (dark-subtracted) are coded exactly too
    src = tmp_path / "p.tif"
    write_stack(src, data)
    masks = rng.random((10, 19, 26)) < 0.4 if explicit else None
    opts = dict(masks=masks) if explicit else dict(B=10, seed=9)
    plain, packed = tmp_path / "plain.npz", tmp_path / "packed.npz"
    encode_stack(src, plain, **opts)
    res = encode_stack(src, packed, pack="predictive", **opts)
    a, b = load_container(plain), load_container(packed)  # verify=True: sha256 of the decoded values
    assert b.format_version == MEMBERS_VERSION and res["measurement_codec"] == "mask-predictive"
    assert b.measurements.dtype == a.measurements.dtype
    np.testing.assert_array_equal(np.asarray(b.measurements), a.measurements)
    np.testing.assert_array_equal(b.measurements[-1], a.measurements[-1])  # the short group's own mask sum
    # a Dask task can carry the lazily decoded measurements (masks and all)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(b.measurements))[1], a.measurements[1])


def test_predictive_packs_noisy_counts_far_smaller_than_jpegxl(tmp_path):
    from emcs.tcs.container import anscombe_codes, encode_measurement
    from emcs.tcs.container.predictive import decode_predictive
    from emcs.tcs.operator import open_count

    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:96, :96]
    bright = 40 + 30 * np.sin(xx / 5.0) * np.cos(yy / 7.0)  # a smooth specimen at ~40 counts/px
    data = rng.poisson(np.broadcast_to(bright, (20, 96, 96))).astype(np.uint16)
    src = tmp_path / "c.tif"
    write_stack(src, data)
    sizes = {}
    for pack, q in (("jpegxl", None), ("predictive", None), ("jpegxl", 1.0), ("predictive", 1.0)):
        out = tmp_path / f"{pack}{q}.npz"
        encode_stack(src, out, B=10, seed=3, pack=pack, quantize=q)
        sizes[pack, q] = load_container(out).file_bytes
    assert sizes["predictive", None] < 0.85 * sizes["jpegxl", None]
    assert sizes["predictive", 1.0] < 0.75 * sizes["jpegxl", 1.0]
    # the codec alone: exact on quantization codes, refuses data made for another step or shape
    C = make_masks(3, 10, 96, 96)
    codes = anscombe_codes((data[:10].astype(np.int64) * C).sum(0), 1.0)
    blob = encode_measurement(codes, "mask-predictive", open_count(C), 1.0)
    np.testing.assert_array_equal(decode_predictive(blob, open_count(C), 1.0, (96, 96)), codes)
    for step, shape, data_ in ((2.0, (96, 96), blob), (1.0, (96, 95), blob), (1.0, (96, 96), blob[:30]),
                               (1.0, (96, 96), b"JUNK" + blob[4:])):
        with pytest.raises(ValueError):
            decode_predictive(data_, open_count(C), step, shape)


def test_predictive_refusals(write_movie, tmp_path):
    _, path, member, bad = _packed_and_corrupted(write_movie, tmp_path, "predictive", np.uint16)
    assert member.endswith(".emp")
    with pytest.raises(EmcsError, match="corrupt|checksum"):
        load_container(bad)
    other = _rewrite(path, tmp_path / "other.npz", edit_meta=lambda m: m["mask"].update(seed=2))
    with pytest.raises(EmcsError, match="corrupt|checksum"):  # other masks: other predictions
        load_container(other)
    old = _rewrite(path, tmp_path / "old.npz", edit_meta=lambda m: m.update(format_version=3))
    with pytest.raises(EmcsError, match="version 3"):
        load_container(old)
    new = _rewrite(path, tmp_path / "new.npz", edit_meta=lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(EmcsError, match="newer"):
        load_container(new)
    fsrc, fdata = write_movie("f.tif", T=10, H=16, W=16, dtype=np.float32)
    res = encode_stack(fsrc, tmp_path / "f.npz", B=5, seed=1, pack="predictive")
    assert res["measurement_codec"] == "zstd-npy"  # float sums: no counts to predict


def test_predictive_format_is_pinned():
    """A blob written by the first predictive coder still decodes to the same values: any change to
    the prediction (which would make old containers unreadable) fails here."""
    from emcs.tcs.container import anscombe_codes
    from emcs.tcs.container.predictive import decode_predictive, encode_predictive
    from emcs.tcs.operator import open_count

    blob = bytes.fromhex(
        "454d500104090000000d000000000000000000f03f70636f210303461d04010374000000360040eaffffff88f6ffff"
        "ff4f40060000000999fc461c142c8e33f99e819ce4f8d5cc18981d2983000c1c36ac06a10e4cab83062bb94e834a0b"
        "d382863b4905868b6ab151eb10114d2e293300")
    C = make_masks(11, 5, 9, 13)
    codes = anscombe_codes((np.random.default_rng(3).poisson(30, (5, 9, 13)) * C).sum(0), 1.0)
    assert int(codes.sum()) == 1929  # the input itself is reproducible
    values = decode_predictive(blob, open_count(C), 1.0, (9, 13))
    np.testing.assert_array_equal(values, codes)
    assert int((values * np.arange(values.size).reshape(values.shape)).sum()) == 112237
    np.testing.assert_array_equal(decode_predictive(encode_predictive(codes, open_count(C), 1.0), open_count(C), 1.0,
                                                    (9, 13)), codes)


# --------------------------------------------------------------------------- validate, open_container
def test_validate_lists_every_problem(container, tmp_path):
    from emcs.tcs.container import validate

    path, _ = container
    assert validate(path) == []
    assert validate(tmp_path / "missing.npz") == ["no such file"]
    (tmp_path / "g.npz").write_bytes(b"not a zip at all" * 10)
    assert "corrupt or truncated archive" in validate(tmp_path / "g.npz")[0]

    def edit(m):
        m.pop("B")
        m["mask"].pop("seed")
        m["measurement_quantization"] = {"kind": "log"}

    problems = validate(_rewrite(path, tmp_path / "many.npz", edit_meta=edit))
    assert len(problems) == 3, problems  # every problem, not just the first
    assert any("quantization" in p for p in problems) and any("lacks: B" in p for p in problems)
    assert any("mask.seed" in p for p in problems)
    with pytest.raises(EmcsError, match="quantization"):  # the loader stops at the first
        load_container(tmp_path / "many.npz")
    inconsistent = _rewrite(path, tmp_path / "i.npz", edit_meta=lambda m: m["input"].update(shape=[99, 16, 12]))
    assert len(validate(inconsistent)) == 2  # frame counts and coverage
    _flip(path, tmp_path / "flip.npz", _data_offset(path, "measurements/00000001.npy") + 3)
    [problem] = validate(tmp_path / "flip.npz")  # the zip CRC-32 of the member
    assert problem.startswith("checksum mismatch")


def test_validate_packed_members(write_movie, tmp_path):
    from emcs.tcs.container import validate

    _, path, member, bad = _packed_and_corrupted(write_movie, tmp_path, "predictive", np.uint16)
    assert validate(path) == []
    assert "corrupt" in validate(bad)[0]
    assert "missing" in validate(_rewrite(path, tmp_path / "gone.npz", drop=(member,)))[0]


def test_open_container_reads_once_and_closes(write_movie, tmp_path, monkeypatch):
    import emcs.tcs.container.packed as packed_mod
    from emcs.tcs.container import open_container
    from emcs.tcs.decode import decode_container

    src, path, member, bad = _packed_and_corrupted(write_movie, tmp_path, "predictive", np.uint16)
    decoded = []
    real = packed_mod.decode_measurement
    monkeypatch.setattr(packed_mod, "decode_measurement",
                        lambda data, *a: decoded.append(1) or real(data, *a))
    with open_container(path) as c:
        assert not c.verified and c.measurements._zf is not None
        blocks = list(c.blocks([1, 2]))
        assert c.verified and len(decoded) == 2
        np.testing.assert_array_equal(np.concatenate(blocks), load_container(path).measurements)
        zf = c.measurements._zf
    assert c.measurements is None and zf.fp is None  # the archive is closed
    decoded.clear()
    decode_container(path, tmp_path / "r.npy", method="gap-tv", iters=2, device="cpu")
    assert len(decoded) == 2  # decode reads every member once (the checksum on the way)
    with pytest.raises(EmcsError, match="corrupt|checksum"):
        decode_container(bad, tmp_path / "bad.npy", method="gap-tv", iters=2, device="cpu")
    assert not (tmp_path / "bad.npy").exists()


def test_writer_needs_the_operator_to_code_predictively(tmp_path):
    from emcs.tcs.container import ContainerWriter

    with pytest.raises(ValueError, match="operator"):
        ContainerWriter(str(tmp_path / "w.npz"), 2, 10, 14, np.uint32, pack="predictive")

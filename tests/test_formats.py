"""Vendor formats: Gatan DM3/DM4, Velox and NCEM EMD, TIA SER (through rosettasciio, the
``formats`` extra) and Falcon EER, on tiny files made by ``tests/vendor_files.py``."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
from vendor_files import write_dm, write_eer, write_ser, write_velox

from emcs.errors import EmcsError
from emcs.io import open_stack, read_stack

needs_rsciio = pytest.mark.skipif(importlib.util.find_spec("rsciio") is None,
                                  reason="needs the formats extra (rosettasciio)")
RNG = np.random.default_rng(5)
MOVIE = RNG.integers(0, 4000, (4, 12, 10)).astype(np.uint16)


# ----------------------------------------------------------------------------- Gatan DM
@needs_rsciio
@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize("dtype", ["uint16", "float32", "int16", "uint8", "int32"])
def test_dm_stack_and_image(tmp_path, version, dtype):
    stack = MOVIE.astype(dtype)
    path = tmp_path / f"movie.dm{version}"
    write_dm(path, stack, version=version, pixel_size=0.25, units="nm")
    with open_stack(path) as s:
        assert s.shape == stack.shape and s.dtype == np.dtype(dtype)
        assert s.pixel_size == pytest.approx(2.5)  # 0.25 nm -> 2.5 Å
        assert s.metadata["format"] == f"dm{version}" and s.metadata["access"] == "lazy"
        np.testing.assert_array_equal(s[2], stack[2])
        np.testing.assert_array_equal(s.read(1, 3), stack[1:3])
    single = tmp_path / f"image.dm{version}"
    write_dm(single, stack[0], version=version, pixel_size=1.5, units="µm")
    data, info = read_stack(single)
    assert data.shape == (1, 12, 10) and info.pixel_size == pytest.approx(1.5e4)
    np.testing.assert_array_equal(data[0], stack[0])


@needs_rsciio
def test_dm_reciprocal_units_give_no_pixel_size(tmp_path):
    path = tmp_path / "diffraction.dm4"
    write_dm(path, MOVIE[0], pixel_size=0.01, units="1/nm")
    with open_stack(path) as s:
        assert s.pixel_size is None


@needs_rsciio
def test_dm_in_situ_series_as_sequence(tmp_path):
    for k in range(3):
        folder = tmp_path / "Hour_00" / "Minute_00" / f"Second_{k:02d}"
        folder.mkdir(parents=True)
        write_dm(folder / f"frame_{k}.dm4", MOVIE[k], pixel_size=0.1)
    with open_stack(str(tmp_path / "Hour_00" / "*" / "*" / "*.dm4")) as s:
        assert s.shape == (3, 12, 10) and s.pixel_size == pytest.approx(1.0)
        np.testing.assert_array_equal(s.read(), MOVIE[:3])


@needs_rsciio
def test_corrupt_dm_is_one_line_error(tmp_path):
    path = tmp_path / "bad.dm4"
    path.write_bytes(b"\x00\x00\x00\x04" + b"\x01" * 40)
    with pytest.raises(EmcsError, match="bad.dm4: not a readable .dm4 file"):
        open_stack(path)


# ----------------------------------------------------------------------------- TIA SER
@needs_rsciio
@pytest.mark.parametrize("version", [0x0210, 0x0220])
def test_ser_series(tmp_path, version):
    path = tmp_path / "series_1.ser"
    write_ser(path, MOVIE.astype(np.int32), pixel_size_m=3e-10, version=version)
    with open_stack(path) as s:
        assert s.shape == MOVIE.shape and s.dtype == np.int32
        assert s.pixel_size == pytest.approx(3.0)
        np.testing.assert_array_equal(s.read(), MOVIE)


# ----------------------------------------------------------------------------- EMD
@needs_rsciio
def test_velox_emd_datasets(tmp_path):
    path = tmp_path / "velox.emd"
    write_velox(path, {"HAADF": MOVIE, "DF4": MOVIE[0].astype(np.float32)}, pixel_size_m=5e-11)
    with open_stack(path) as s:
        assert s.shape == MOVIE.shape and s.dtype == np.uint16
        assert s.pixel_size == pytest.approx(0.5)
        assert s.metadata["datasets"] == ["HAADF", "DF4"]
        np.testing.assert_array_equal(s[3], MOVIE[3])
    for choice in ("DF4", 1, "1"):
        with open_stack(path, dataset=choice) as s:
            assert s.shape == (1, 12, 10) and s.dtype == np.float32
    with pytest.raises(EmcsError, match="dataset 'BF' not found; the images here are 0: HAADF"):
        open_stack(path, dataset="BF")


@needs_rsciio
def test_ncem_emd_written_by_rosettasciio(tmp_path):
    from rsciio.emd import file_writer

    axes = [{"name": n, "size": k, "scale": sc, "offset": 0.0, "units": u, "navigate": False}
            for n, k, sc, u in (("t", 4, 1.0, "s"), ("y", 12, 0.2, "nm"), ("x", 10, 0.2, "nm"))]
    signal = {"data": MOVIE, "axes": axes, "original_metadata": {},
              "metadata": {"General": {"title": "insitu"}, "Signal": {}}}
    for name in ("ncem.emd", "ncem.h5"):
        file_writer(str(tmp_path / name), signal)
        with open_stack(tmp_path / name) as s:
            assert s.shape == MOVIE.shape and s.pixel_size == pytest.approx(2.0)
            np.testing.assert_array_equal(s.read(), MOVIE)


@needs_rsciio
def test_spectrum_image_is_refused(tmp_path):
    from rsciio.emd import file_writer

    axes = [{"name": "y", "size": 3, "scale": 1.0, "offset": 0.0, "units": "nm", "navigate": True},
            {"name": "x", "size": 4, "scale": 1.0, "offset": 0.0, "units": "nm", "navigate": True},
            {"name": "E", "size": 50, "scale": 1.0, "offset": 0.0, "units": "eV",
             "navigate": False}]
    signal = {"data": np.zeros((3, 4, 50), np.float32), "axes": axes, "original_metadata": {},
              "metadata": {"General": {"title": "eels"}, "Signal": {}}}
    file_writer(str(tmp_path / "si.emd"), signal)
    with pytest.raises(EmcsError, match="holds no image or image stack"):
        open_stack(tmp_path / "si.emd")


def test_missing_extra_is_one_line(tmp_path, monkeypatch):
    path = tmp_path / "a.dm4"
    write_dm(path, MOVIE[0])
    monkeypatch.setitem(sys.modules, "rsciio.digitalmicrograph", None)
    with pytest.raises(EmcsError) as err:
        open_stack(path)
    assert str(err.value) == (f"{path}: reading .dm4 needs the optional extra: "
                              "pip install 'emcs[formats]'")


# ----------------------------------------------------------------------------- EER
FRACTIONS = (RNG.random((10, 16, 20)) < 0.05).astype(np.uint8)


def test_eer_fractions_grouping_and_upsampling(tmp_path):
    path = tmp_path / "movie.eer"
    write_eer(path, FRACTIONS, pixel_size_m=8e-11)
    with open_stack(path) as s:
        assert s.shape == (10, 16, 20) and s.dtype == np.uint16
        assert s.pixel_size == pytest.approx(0.8)
        np.testing.assert_array_equal(s.read(), FRACTIONS)
    with open_stack(path, eer_frames=3) as s:
        assert s.shape == (3, 16, 20) and s.metadata["eer_dropped_fractions"] == 1
        np.testing.assert_array_equal(s[1], FRACTIONS[3:6].sum(0))
    for up in (2, 4):
        with open_stack(path, eer_frames=5, eer_upsampling=up) as s:
            assert s.shape == (2, 16 * up, 20 * up) and s.pixel_size == pytest.approx(0.8 / up)
            assert s.read().sum() == FRACTIONS.sum()  # every event lands in one sub-pixel
            binned = s[0].reshape(16, up, 20, up).sum(axis=(1, 3))
            np.testing.assert_array_equal(binned, FRACTIONS[:5].sum(0))


@pytest.mark.parametrize("kwargs, message", [
    ({"eer_frames": 0}, "eer_frames must be an integer >= 1"),
    ({"eer_frames": 11}, "eer_frames is 11 but the file has only 10 EER fractions"),
    ({"eer_upsampling": 3}, "eer_upsampling must be 1, 2 or 4"),
])
def test_eer_bad_options(tmp_path, kwargs, message):
    path = tmp_path / "movie.eer"
    write_eer(path, FRACTIONS)
    with pytest.raises(EmcsError, match=message) as err:
        open_stack(path, **kwargs)
    assert err.value.param in ("eer_frames", "eer_upsampling")


def test_unknown_suffix_lists_the_readable_ones(tmp_path):
    path = tmp_path / "a.xyz"
    path.write_bytes(b"123")
    with pytest.raises(EmcsError, match=r"unknown file type; emcs reads .*\.dm4.*\.eer"):
        open_stack(path)


@needs_rsciio
def test_block_reader_reads_each_block_once():
    import dask.array as da

    from emcs.io.vendor import _BlockReader

    data = np.arange(10 * 4 * 3, dtype=np.uint16).reshape(10, 4, 3)
    calls = []

    def load(block, block_info=None):
        calls.append(block_info[0]["array-location"][0])
        return block

    lazy = da.from_array(data, chunks=(4, 4, 3)).map_blocks(load, dtype=data.dtype)
    reader = _BlockReader(lazy)
    got = np.concatenate([reader(a, min(a + 3, 10)) for a in range(0, 10, 3)])
    np.testing.assert_array_equal(got, data)
    assert sorted(set(calls)) == [(0, 4), (4, 8), (8, 10)] and len(calls) == 3


@needs_rsciio
def test_ser_reciprocal_calibration_gives_no_pixel_size(tmp_path):
    # TIA diffraction patterns are calibrated in 1/m; rosettasciio reports them as ~1e16 nm
    path = tmp_path / "diffraction_1.ser"
    write_ser(path, MOVIE[:1], pixel_size_m=4e7)
    with open_stack(path) as s:
        assert s.pixel_size is None

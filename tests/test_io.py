"""The shared I/O layer: round trips per format, lazy access, clear refusals."""

from __future__ import annotations

import os

import numpy as np
import pytest

from emcs.errors import EmcsError
from emcs.io import StackWriter, atomic_output, open_stack, read_stack, write_stack

DTYPES = ["uint8", "int8", "uint16", "int16", "float16", "float32"]


def _data(dtype, shape=(5, 17, 23), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 100).astype(dtype)


@pytest.mark.parametrize("ext", ["tif", "mrc", "npy"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_keeps_pixels_shape_dtype_and_pixel_size(tmp_path, ext, dtype):
    data = _data(dtype)
    path = tmp_path / f"stack.{ext}"
    write_stack(path, data, pixel_size=1.25)
    with open_stack(path) as stack:
        assert stack.shape == data.shape
        back = stack.read()
    expected_dtype = np.uint16 if (ext == "mrc" and dtype == "uint8") else data.dtype
    assert back.dtype == expected_dtype  # MRC has no uint8 mode: widened losslessly
    np.testing.assert_array_equal(back, data.astype(expected_dtype))
    if ext == "npy":
        assert stack.pixel_size is None  # .npy carries no metadata
    else:
        assert stack.pixel_size == pytest.approx(1.25, rel=1e-6)


def test_uint32_and_float64_tiff(tmp_path):
    for dtype in ("uint32", "float64"):
        data = _data(dtype)
        write_stack(tmp_path / f"{dtype}.tif", data)
        back, info = read_stack(tmp_path / f"{dtype}.tif")
        assert back.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(back, data)


def test_single_image_is_one_frame(tmp_path):
    import imageio.v3 as iio

    img = _data("uint8", (20, 30))
    iio.imwrite(tmp_path / "one.png", img)
    with open_stack(tmp_path / "one.png") as s:
        assert s.shape == (1, 20, 30)
        np.testing.assert_array_equal(s[0], img)
    write_stack(tmp_path / "one.tif", img)
    assert open_stack(tmp_path / "one.tif").shape == (1, 20, 30)


def test_glob_sequence(tmp_path):
    import imageio.v3 as iio

    frames = _data("uint8", (4, 12, 10))
    for i, f in enumerate(frames):
        iio.imwrite(tmp_path / f"f{i:03d}.png", f)
    stack = open_stack(str(tmp_path / "f*.png"))
    assert stack.shape == (4, 12, 10)
    np.testing.assert_array_equal(stack.read(1, 3), frames[1:3])


def test_frame_ranges_and_chunks(tmp_path):
    data = _data("uint16", (11, 8, 9))
    write_stack(tmp_path / "s.tif", data)
    with open_stack(tmp_path / "s.tif") as s:
        np.testing.assert_array_equal(s[3], data[3])
        np.testing.assert_array_equal(s[-1], data[-1])
        np.testing.assert_array_equal(s[2:7], data[2:7])
        chunks = list(s.iter_chunks(4))
        assert [len(c) for c in chunks] == [4, 4, 3]
        np.testing.assert_array_equal(np.concatenate(chunks), data)


def test_compressed_tiff_is_read_page_by_page(tmp_path):
    import tifffile

    data = _data("uint16", (6, 16, 16))
    tifffile.imwrite(tmp_path / "z.tif", data, compression="zlib", photometric="minisblack")
    with open_stack(tmp_path / "z.tif") as s:
        assert s.metadata["access"] != "tiff-mmap"
        np.testing.assert_array_equal(s.read(2, 5), data[2:5])


def test_imagej_pixel_size_in_microns(tmp_path):
    import tifffile

    data = _data("uint16", (3, 8, 8))
    tifffile.imwrite(
        tmp_path / "ij.tif", data, imagej=True, resolution=(1 / 0.05, 1 / 0.05),
        metadata={"unit": "um", "axes": "TYX"},
    )
    with open_stack(tmp_path / "ij.tif") as s:
        assert s.shape == (3, 8, 8)
        assert s.pixel_size == pytest.approx(500.0)  # 0.05 µm = 500 Å


def test_mrc_is_memory_mapped(tmp_path):
    data = _data("float32", (4, 10, 12))
    write_stack(tmp_path / "m.mrc", data, pixel_size=0.8)
    with open_stack(tmp_path / "m.mrc") as s:
        assert s.metadata["access"] == "mmap"
        np.testing.assert_array_equal(s[2], data[2])


def test_stack_writer_streams_chunks(tmp_path):
    data = _data("float32", (7, 9, 9))
    for ext in ("tif", "mrc", "npy"):
        with StackWriter(tmp_path / f"w.{ext}", data.shape, data.dtype, pixel_size=3.0) as w:
            for chunk in (data[:3], data[3:6], data[6:]):
                w.write(chunk)
        back, info = read_stack(tmp_path / f"w.{ext}")
        np.testing.assert_array_equal(back, data)


def test_no_overwrite_without_force(tmp_path):
    p = tmp_path / "a.tif"
    write_stack(p, _data("uint8"))
    before = p.read_bytes()
    with pytest.raises(EmcsError, match="already exists; use --force"):
        write_stack(p, _data("uint8", seed=1))
    assert p.read_bytes() == before
    write_stack(p, _data("uint8", seed=1), force=True)
    assert p.read_bytes() != before


def test_failed_write_leaves_nothing_behind(tmp_path):
    p = tmp_path / "b.tif"
    with pytest.raises(RuntimeError):
        with StackWriter(p, (3, 4, 4), np.uint8) as w:
            w.write(np.zeros((1, 4, 4), np.uint8))  # 1 of 3 frames, then close
    assert not p.exists()
    assert os.listdir(tmp_path) == []


def test_atomic_output_keeps_old_file_on_error(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("old")
    with pytest.raises(ValueError):
        with atomic_output(p, force=True) as tmp:
            open(tmp, "w").write("new")
            raise ValueError("boom")
    assert p.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["c.txt"]


@pytest.mark.parametrize(
    "maker, message",
    [
        (lambda d: None, "no such file"),
        (lambda d: (d / "x.tif").write_bytes(b""), "empty"),
        (lambda d: (d / "x.tif").write_bytes(b"not a tiff at all"), "not a readable TIFF"),
        (lambda d: (d / "x.mrc").write_bytes(b"\0" * 2000), "not a valid MRC"),
        (lambda d: np.save(d / "x.npy", np.zeros((2, 3, 4, 5, 6))), "2-D image or a 3-D stack"),
        (lambda d: np.save(d / "x.npy", np.zeros((3, 4), complex)), "unsupported pixel type"),
        (lambda d: np.save(d / "x.npy", np.array([{"a": 1}], dtype=object)), "not a plain numeric"),
        (lambda d: (d / "x.xyz").write_bytes(b"1234"), "unknown file type"),
    ],
)
def test_bad_inputs_raise_one_clear_error(tmp_path, maker, message):
    maker(tmp_path)
    matches = [p for p in tmp_path.iterdir()]
    path = matches[0] if matches else tmp_path / "missing.tif"
    with pytest.raises(EmcsError) as err:
        open_stack(path)
    text = str(err.value)
    assert message in text
    assert str(path) in text
    assert "\n" not in text


def test_truncated_mrc_is_refused(tmp_path):
    write_stack(tmp_path / "t.mrc", _data("float32", (4, 32, 32)))
    raw = (tmp_path / "t.mrc").read_bytes()
    (tmp_path / "t.mrc").write_bytes(raw[: len(raw) - 3000])
    with pytest.raises(EmcsError, match="t.mrc"):
        with open_stack(tmp_path / "t.mrc") as s:
            s.read()


def test_truncated_tiff_is_refused(tmp_path):
    import tifffile

    tifffile.imwrite(
        tmp_path / "t.tif", _data("uint16", (4, 32, 32)), compression="zlib", photometric="minisblack"
    )
    raw = (tmp_path / "t.tif").read_bytes()
    (tmp_path / "t.tif").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(EmcsError, match="t.tif"):
        with open_stack(tmp_path / "t.tif") as s:
            s.read()


def test_written_files_get_normal_permissions(tmp_path):
    from emcs.io import atomic_output

    mask = os.umask(0o022)
    try:
        write_stack(tmp_path / "p.tif", _data("uint8"))
        with atomic_output(tmp_path / "q.bin") as tmp:  # a writer that replaces the file it is given
            os.unlink(tmp)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
    finally:
        os.umask(mask)
    assert (os.stat(tmp_path / "p.tif").st_mode & 0o777) == 0o644
    assert (os.stat(tmp_path / "q.bin").st_mode & 0o777) == 0o644

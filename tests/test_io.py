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


# ----------------------------------------------------------------------------- outputs
def test_check_output_suffixes_and_missing_folder(tmp_path):
    from emcs.io import check_output

    with pytest.raises(EmcsError, match=r"out.tif: unsupported output type; allowed: .npz$"):
        check_output(tmp_path / "out.tif", suffixes=(".npz",))
    assert check_output(tmp_path / "OUT.NPZ", suffixes=(".npz",)).endswith("OUT.NPZ")
    with pytest.raises(EmcsError, match=r"does not exist; create it first \(mkdir -p "):
        check_output(tmp_path / "nope" / "out.tif")


def test_mrc_movie_is_an_image_stack(tmp_path):
    import mrcfile

    write_stack(tmp_path / "m.mrc", _data("float32", (5, 16, 16)), pixel_size=1.25)
    with mrcfile.open(tmp_path / "m.mrc") as mrc:
        assert mrc.header.ispg == 0 and mrc.is_image_stack() and not mrc.is_volume()
        assert int(mrc.header.nz) == 5 and int(mrc.header.mz) == 1
        assert float(mrc.voxel_size.x) == pytest.approx(1.25)
    with open_stack(tmp_path / "m.mrc") as s:
        assert s.pixel_size == pytest.approx(1.25) and s.pixel_size_nm == pytest.approx(0.125)


def test_stale_partials_are_cleaned(tmp_path):
    from emcs.io import clean_stale_partials

    dead = tmp_path / ".out.npz.999999999-0a1b2c3d.part.npz"
    mine = tmp_path / f".out.npz.{os.getpid()}-0a1b2c3d.part.npz"
    old = tmp_path / f".x.tif.{os.getppid()}-00000000.part.tif"
    other = tmp_path / ".hidden.part.txt"
    for f in (dead, mine, old, other):
        f.write_bytes(b"x")
    os.utime(old, (0, 0))  # older than a day: its pid may have been reused
    with atomic_output(tmp_path / "new.tif") as tmp:
        open(tmp, "wb").close()
        assert os.path.basename(tmp).startswith(f".new.tif.{os.getpid()}-")
    assert not dead.exists() and not old.exists()
    assert mine.exists() and other.exists() and (tmp_path / "new.tif").exists()
    assert clean_stale_partials(str(tmp_path)) == []


def test_killed_writer_leaves_a_file_the_next_run_removes(tmp_path):
    import subprocess
    import sys

    code = ("import os, signal, numpy as np; from emcs.io import StackWriter\n"
            f"w = StackWriter({str(tmp_path / 'big.tif')!r}, (4, 8, 8), np.uint16).__enter__()\n"
            "w.write(np.zeros((1, 8, 8), np.uint16)); os.kill(os.getpid(), signal.SIGKILL)\n")
    subprocess.run([sys.executable, "-c", code], env={**os.environ}, check=False)
    left = [f for f in os.listdir(tmp_path) if f.startswith(".big.tif.")]
    assert len(left) == 1 and not (tmp_path / "big.tif").exists()
    write_stack(tmp_path / "other.tif", _data("uint16"))
    assert sorted(os.listdir(tmp_path)) == ["other.tif"]


# ----------------------------------------------------------------------------- sequences
@pytest.mark.parametrize("dtype, suffix", [("uint8", "png"), ("uint16", "png"),
                                           ("float32", "tif"), ("int16", "npy")])
def test_sequence_roundtrip(tmp_path, dtype, suffix):
    data = _data(dtype, (3, 9, 7))
    pattern = str(tmp_path / f"f_%04d.{suffix}")
    with StackWriter(pattern, data.shape, data.dtype, pixel_size=2.0) as w:
        w.write(data)
    assert sorted(os.listdir(tmp_path)) == [f"f_{k:04d}.{suffix}" for k in range(3)]
    for name in (pattern, str(tmp_path / f"f_*.{suffix}")):
        back, info = read_stack(name)
        assert back.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(back, data)


def test_sequence_rules(tmp_path):
    pattern = str(tmp_path / "f_%d.png")
    with pytest.raises(EmcsError, match="PNG frames hold 8- or 16-bit unsigned integers"):
        with StackWriter(pattern, (2, 8, 8), np.float32):
            pass
    write_stack(pattern, _data("uint8", (12, 8, 8)))
    with pytest.raises(EmcsError, match="f_0.png: already exists"):
        write_stack(pattern, _data("uint8", (2, 8, 8)))
    with open_stack(pattern) as s:  # natural order: f_2 before f_10
        np.testing.assert_array_equal(s[10], _data("uint8", (12, 8, 8))[10])
    write_stack(pattern, _data("uint8", (2, 8, 8)) + 1, force=True)  # older frames 2..11 go
    assert sorted(os.listdir(tmp_path)) == ["f_0.png", "f_1.png"]
    with pytest.raises(RuntimeError):
        with StackWriter(str(tmp_path / "g_%03d.tif"), (3, 8, 8), np.uint16) as w:
            w.write(np.zeros((2, 8, 8), np.uint16))
    assert not any(f.startswith("g_") for f in os.listdir(tmp_path))  # a failed run leaves none


# ----------------------------------------------------------------------------- stdin / stdout
@pytest.mark.parametrize("suffix", [".tif", ".npy", ".mrc"])
def test_stdin_and_stdout(tmp_path, suffix):
    import subprocess
    import sys

    data = _data("uint16", (3, 8, 8))
    write_stack(tmp_path / f"in{suffix}", data)
    code = ("import sys; from emcs.io import read_stack, write_stack\n"
            "data, info = read_stack('-'); write_stack('-', data, pixel_size=info.pixel_size)\n")
    with open(tmp_path / f"in{suffix}", "rb") as src, open(tmp_path / "out.tif", "wb") as dst:
        subprocess.run([sys.executable, "-c", code], stdin=src, stdout=dst, check=True)
    back, _ = read_stack(tmp_path / "out.tif")
    np.testing.assert_array_equal(back, data)
    assert sorted(os.listdir(tmp_path)) == sorted([f"in{suffix}", "out.tif"])


def test_stdin_garbage_is_refused(tmp_path):
    import subprocess
    import sys

    code = ("from emcs.errors import EmcsError; from emcs.io import open_stack\n"
            "try:\n    open_stack('-')\nexcept EmcsError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], input=b"hello", capture_output=True,
                         check=True).stdout.decode()
    assert out.startswith("-: unrecognised data on standard input")


# ----------------------------------------------------------------------------- statistics
@pytest.mark.parametrize("dtype", ["uint16", "float32", "int8"])
def test_stack_stats_streams(tmp_path, dtype):
    from emcs.io import stack_stats

    data = _data(dtype, (7, 33, 31))
    write_stack(tmp_path / "s.npy", data)
    with open_stack(tmp_path / "s.npy") as s:
        st = stack_stats(s, chunk_bytes=1)  # one frame at a time
    ref = data.astype(np.float64)
    assert st["min"] == ref.min() and st["max"] == ref.max() and st["n_pixels"] == ref.size
    assert st["mean"] == pytest.approx(ref.mean()) and st["std"] == pytest.approx(ref.std())


def _mapped_rss_kb(path) -> int | None:
    """Resident kB of this process's mappings of ``path`` (/proc/self/smaps), None off Linux."""
    try:
        text = open("/proc/self/smaps").read()
    except OSError:
        return None
    total, inside = 0, False
    for line in text.splitlines():
        if not line[:1].isupper():  # a mapping's header line: "addr perms offset dev inode path"
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.mark.parametrize("ext", ["npy", "mrc", "tif"])
def test_zero_copy_read_is_a_view_of_the_mapping_and_release_drops_its_pages(tmp_path, ext):
    data = _data("uint16", (8, 256, 256))  # 1 MiB: whole pages to drop
    path = tmp_path / f"z.{ext}"
    write_stack(path, data)
    with open_stack(path) as s:
        view, copy = s.read(2, 6, copy=False), s.read(2, 6)
        assert not view.flags.writeable and not view.flags.owndata and copy.flags.owndata
        np.testing.assert_array_equal(view, data[2:6])
        np.testing.assert_array_equal(copy, data[2:6])
        before = _mapped_rss_kb(path)
        s.release(0, 8)
        after = _mapped_rss_kb(path)
        if before is not None:
            assert before >= 512 and after < before - 400, (before, after)
        np.testing.assert_array_equal(view, data[2:6])  # a view in use reads its pages back
        s.release(5, 3)  # an empty range is a no-op


def test_zero_copy_read_of_foreign_byte_order_is_a_native_copy(tmp_path):
    data = _data("uint16", (3, 8, 8))
    np.save(tmp_path / "be.npy", data.astype(">u2"))
    with open_stack(tmp_path / "be.npy") as s:
        frames = s.read(0, 3, copy=False)
        assert frames.dtype == np.dtype("uint16") and frames.dtype.isnative
        assert frames.flags.owndata
        np.testing.assert_array_equal(frames, data)
        s.release(0, 3)

"""Reading speed of each vendor format against TIFF, through ``emcs.io.open_stack``.

The files are made here, by this script (no microscope files): the same
uint16 movie written as TIFF, MRC, .npy, Gatan DM3 and DM4, TIA SER, Velox EMD
(HDF5, chunked per frame as Velox writes) and NCEM EMD (written by
rosettasciio), and a Falcon-style EER of random electron events (compression
65001). Each file is opened and streamed chunk by chunk (``iter_chunks``) as
``emcs encode`` reads it; the page cache is warm (the file was just written),
so these are decoding / library overheads, not disk speeds.

Run:  python benchmarks/bench_formats.py [--frames 64] [--size 512] [--repeat 3]
Results: benchmarks/formats.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from vendor_files import write_dm, write_eer, write_ser, write_velox  # noqa: E402

from emcs.io import open_stack, write_stack  # noqa: E402


def _ncem(path: str, movie: np.ndarray) -> None:
    from rsciio.emd import file_writer

    axes = [{"name": n, "size": k, "scale": 0.1, "offset": 0.0, "units": u, "navigate": False}
            for n, k, u in zip("tyx", movie.shape, ("s", "nm", "nm"), strict=True)]
    file_writer(path, {"data": movie, "axes": axes, "original_metadata": {},
                       "metadata": {"General": {"title": "bench"}, "Signal": {}}})


def make_files(folder: str, frames: int, size: int) -> dict[str, str]:
    rng = np.random.default_rng(0)
    movie = rng.poisson(30, (frames, size, size)).astype(np.uint16)
    files = {}
    for name, writer in [
        ("tiff", lambda p: write_stack(p, movie, pixel_size=1.0)),
        ("mrc", lambda p: write_stack(p, movie, pixel_size=1.0)),
        ("npy", lambda p: write_stack(p, movie)),
        ("dm3", lambda p: write_dm(p, movie, version=3)),
        ("dm4", lambda p: write_dm(p, movie, version=4)),
        ("ser", lambda p: write_ser(p, movie)),
        ("emd", lambda p: write_velox(p, {"HAADF": movie})),
        ("h5", lambda p: _ncem(p, movie)),
    ]:
        suffix = {"tiff": "tif", "emd": "emd"}.get(name, name)
        path = os.path.join(folder, f"movie_{name}.{suffix}")
        writer(path)
        files[{"emd": "velox emd", "h5": "ncem emd (.h5)"}.get(name, name)] = path
    events = (rng.random((frames * 8, size, size)) < 0.01).astype(np.uint8)
    path = os.path.join(folder, "movie.eer")
    write_eer(path, events)
    files["eer (8 fractions/frame)"] = path
    return files


def bench(path: str, repeat: int, **options) -> dict:
    best_open, best_read = np.inf, np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        with open_stack(path, **options) as s:
            t1 = time.perf_counter()
            for _chunk in s.iter_chunks(8):
                pass
            t2 = time.perf_counter()
            shape, nbytes = s.shape, s.nbytes
        best_open, best_read = min(best_open, t1 - t0), min(best_read, t2 - t1)
    return {"shape": shape, "open_s": best_open, "read_s": best_read,
            "mb_s": nbytes / 2**20 / best_read, "frames_s": shape[0] / best_read,
            "file_mb": os.path.getsize(path) / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        files = make_files(folder, args.frames, args.size)
        print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
              f"Python {platform.python_version()}, numpy {np.__version__}")
        print("| format | file MB | frames (T, H, W) | open s | read MB/s | frames/s |")
        print("|---|---|---|---|---|---|")
        for name, path in files.items():
            options = {"eer_frames": 8} if path.endswith(".eer") else {}
            r = bench(path, args.repeat, **options)
            print(f"| {name} | {r['file_mb']:.1f} | {r['shape']} | {r['open_s']:.3f} | "
                  f"{r['mb_s']:.0f} | {r['frames_s']:.0f} |")


if __name__ == "__main__":
    main()

"""Benchmark of `emcs encode`: throughput vs zstd and JPEG XL, and peak memory vs movie length.

Usage::

    python benchmarks/bench_encode.py            # full run (a few minutes on 2 cores)
    python benchmarks/bench_encode.py --quick    # small sizes, for a smoke test

Part 1 (one core: BLAS/OpenMP threads pinned to 1, codecs with numthreads=1)
encodes the same frames with

- the TCS encoder kernel (``encode_group``: one AND + one add per pixel and
  frame, masks prepared once), in memory;
- ``emcs encode`` end to end (``encode_stack`` from a ``.npy`` in the page
  cache to a finished container, checksum included);
- zstd level 3 (``imagecodecs.zstd_encode``, per frame);
- JPEG XL lossless, effort 3 (``imagecodecs.jpegxl_encode``, per frame);

and reports MB/s of input pixels, the compression ratio (input pixel bytes /
output bytes) and the speed ratios measured in the same run. The frames are the
real serial-section TEM stack shipped in ``../shared/data`` (ISBI 2012,
uint8, 30 sections played forwards and backwards to 120 frames), and a
low-dose uint16 "counts" version of it (Poisson, mean about 4 counts).

Part 2 (``--parts roundtrip``) encodes a 400 x 512 x 512 uint16 counts movie
(40 measurements at B = 10) with every ``--pack`` / ``--quantize`` mode
(``encode_stack``, best of 3) and decodes each container through the CLI
(``emcs decode --method gap-tv --device cpu``, in-process, best of 2) with
GAP-TV replaced by a stand-in that returns zeros: what is timed is the decode
pipeline around the decoder (opening, validating and verifying the container,
decoding its members, scaling, writing the output ``.npy``).

Part ``disk`` (``--parts disk [--base CHECKOUT] [--frames 2000]``) encodes a
2000 x 1024 x 1024 uint16 movie (4.2 GB, made in /tmp and deleted after) from
the page cache with ``emcs encode`` in a subprocess, this tree and ``--base``
alternating: whole-process GB/s, CPU seconds, peak RSS, start-up; and JPEG XL
lossless effort 1 on one thread in memory, in the same run.

Part 3 runs ``emcs encode`` in a subprocess on movies of growing length
(512 x 512 uint16, .npy and .tif) and samples the child's /proc status every
10 ms: peak RSS, and its anonymous part (heap: what the encoder allocates)
versus file-backed pages (the memory-mapped input, which the kernel can drop
at any time).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from _machine import steal_jiffies, steal_since  # noqa: E402

# real data live beside the checkout in ../shared/data; EMCS_SHARED_DATA overrides
SHARED_DATA = Path(os.environ.get("EMCS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SSTEM = str(SHARED_DATA / "isbi2012-sstem" / "sstem_30x512x512_uint8.tif")


def _best(fn, repeats=3):
    best = float("inf")
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def load_frames(quick: bool) -> dict[str, np.ndarray]:
    from emcs.io import read_stack

    if os.path.exists(SSTEM):
        base, _ = read_stack(SSTEM)
    else:  # fall back to a synthetic texture of the same size
        rng = np.random.default_rng(0)
        base = rng.integers(0, 256, (30, 512, 512), dtype=np.uint8)
    if quick:
        base = base[:10, :256, :256]
    else:  # 120 frames (the 30 sections, forwards and backwards, twice) so fixed costs amortize
        base = np.concatenate([base, base[::-1], base, base[::-1]])
    rng = np.random.default_rng(1)
    counts = rng.poisson(base.astype(np.float64) / 255 * 8).astype(np.uint16)
    return {"sstem uint8": np.ascontiguousarray(base), "low-dose counts uint16": counts}


def bench_throughput(frames: dict[str, np.ndarray], B: int) -> list[dict]:
    return [_bench_one(name, x, B) for name, x in frames.items()]


def _bench_one(name: str, x: np.ndarray, B: int) -> dict:
    import imagecodecs

    from emcs.tcs.encode import encode_stack
    from emcs.tcs.masks import make_masks
    from emcs.tcs.operator import accumulator_dtype, bit_masks, encode_group

    T, H, W = x.shape
    nbytes = x.nbytes
    pats = bit_masks(make_masks(1, B, H, W), x.dtype)
    acc = np.zeros((H, W), accumulator_dtype(x.dtype, B))
    scratch = np.empty((H, W), pats.dtype)

    def kernel():
        for k in range(0, T, B):
            encode_group(x[k : k + B], pats, out=acc, scratch=scratch)

    t_kernel, _ = _best(kernel)

    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "m.npy")
        np.save(src, x)
        out = os.path.join(tmp, "m.npz")
        t_e2e, res = _best(lambda: encode_stack(src, out, B=B, seed=1, force=True))

    def zstd():
        return sum(len(imagecodecs.zstd_encode(f.tobytes(), level=3)) for f in x)

    def jxl():
        return sum(len(imagecodecs.jpegxl_encode(f, lossless=True, effort=3, numthreads=1)) for f in x)

    t_zstd, zbytes = _best(zstd)
    t_jxl, jbytes = _best(jxl, repeats=1)
    return {
        "frames": name,
        "shape": f"{T}x{H}x{W}",
        "MB": nbytes / 1e6,
        "tcs_kernel_MBs": nbytes / 1e6 / t_kernel,
        "tcs_e2e_MBs": nbytes / 1e6 / t_e2e,
        "tcs_ratio": res["ratio"],
        "zstd_MBs": nbytes / 1e6 / t_zstd,
        "zstd_ratio": nbytes / zbytes,
        "jxl_MBs": nbytes / 1e6 / t_jxl,
        "jxl_ratio": nbytes / jbytes,
    }


def _peak_memory(cmd: list[str], env: dict | None = None) -> dict:
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # cwd: `python -c` puts the working directory first on sys.path, before PYTHONPATH
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                            cwd=tempfile.gettempdir())
    peak = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
    status = f"/proc/{proc.pid}/status"
    t0 = time.perf_counter()
    while proc.poll() is None:
        try:
            with open(status) as fh:
                for line in fh:
                    key = line.split(":")[0]
                    if key in peak:
                        peak[key] = max(peak[key], int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(0.01)
    seconds = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {err}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {k: v / 1024 for k, v in peak.items()} | {"seconds": seconds, "cpu_seconds": cpu}


def _write_movie(path: str, T: int, H: int, W: int) -> None:
    """A (T, H, W) uint16 movie written chunk by chunk (never whole in memory)."""
    rng = np.random.default_rng(0)
    if path.endswith(".npy"):
        mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=(T, H, W))
        for a in range(0, T, 50):
            mm[a : a + 50] = rng.poisson(20.0, (min(50, T - a), H, W)).astype(np.uint16)
        mm.flush()
        del mm
    else:
        import tifffile

        with tifffile.TiffWriter(path, bigtiff=True) as tw:
            for a in range(0, T, 50):
                for f in rng.poisson(20.0, (min(50, T - a), H, W)).astype(np.uint16):
                    tw.write(f, contiguous=True, photometric="minisblack")


def bench_memory(lengths: list[int], size: int, B: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        for ext in (".npy", ".tif"):
            for T in lengths:
                src = os.path.join(tmp, f"movie_{T}{ext}")
                _write_movie(src, T, size, size)
                out = os.path.join(tmp, f"movie_{T}.npz")
                cmd = [sys.executable, "-c",
                       "import sys; from emcs.cli import main; sys.argv=sys.argv[1:]; main()",
                       "emcs", "encode", src, "-o", out, "-B", str(B), "--seed", "1", "--quiet", "--force"]
                peak = _peak_memory(cmd)
                movie_mb = T * size * size * 2 / 1e6
                rows.append({"input": ext, "T": T, "movie_MB": movie_mb, **peak,
                             "MBs": movie_mb / peak["seconds"]})
                os.unlink(src)
                os.unlink(out)
    return rows


_EMCS = "import sys; from emcs.cli import main; sys.argv=sys.argv[1:]; main()"


def _tree_env(tree: str) -> dict:
    return {**os.environ, "PYTHONPATH": os.path.abspath(tree)}


def bench_disk(T: int, size: int, B: int, trees: dict[str, tuple[str, list[str]]],
               repeats: int = 3) -> dict:
    """Whole-process `emcs encode` of a (T, size, size) uint16 movie in the page cache, for each
    source tree (label -> (checkout, extra encode options)), alternating; JPEG XL lossless
    effort 1 (one thread, in memory) on 20 of its frames; start-up (`encode --help`, a tiny
    encode) per tree; the virtual machine's CPU steal time over the encodes."""
    import imagecodecs

    tmp = os.environ.get("BENCH_TMP", tempfile.gettempdir())
    movie, out = os.path.join(tmp, f"encspeed_movie_{T}x{size}.npy"), os.path.join(tmp, "encspeed_movie.npz")
    tiny = os.path.join(tmp, "encspeed_tiny.npy")
    rng = np.random.default_rng(0)
    np.save(tiny, rng.integers(0, 41, (20, 64, 64)).astype(np.uint16))
    if not os.path.exists(movie):
        mm = np.lib.format.open_memmap(movie, mode="w+", dtype=np.uint16, shape=(T, size, size))
        for a in range(0, T, 50):  # counts 0..40 (mean 20): sums at B = 10 fit uint16, not uint8
            mm[a : a + 50] = rng.integers(0, 41, (min(50, T - a), size, size), dtype=np.uint16)
        mm.flush()
        del mm
    with open(movie, "rb") as fh:  # into the page cache
        while fh.read(1 << 26):
            pass
    nbytes = T * size * size * 2
    rows = {label: {"runs": [], "peak": 0.0} for label in trees}
    steal0 = steal_jiffies()
    try:
        for _ in range(repeats):
            for label, (tree, extra) in trees.items():
                cmd = [sys.executable, "-c", _EMCS, "emcs", "encode", movie, "-o", out, "-B", str(B),
                       "--seed", "1", "--quiet", "--force", *extra]
                peak = _peak_memory(cmd, _tree_env(tree))
                rows[label]["runs"].append(nbytes / 1e9 / peak["seconds"])
                rows[label].setdefault("cpu", []).append(peak["cpu_seconds"])
                rows[label]["peak"] = max(rows[label]["peak"], peak["VmRSS"])
                rows[label]["output_MB"] = os.path.getsize(out) / 1e6
        rows["steal"] = steal_since(steal0)
        for label, (tree, _extra) in trees.items():
            for what, args in (("help", ["encode", "--help"]),
                               ("tiny", ["encode", tiny, "-o", out, "--seed", "1", "--quiet", "--force"])):
                rows[label][what] = min(_peak_memory([sys.executable, "-c", _EMCS, "emcs", *args],
                                                     _tree_env(tree))["seconds"] for _ in range(3))
        rows["python -c pass"] = min(_peak_memory([sys.executable, "-c", "pass"])["seconds"] for _ in range(3))
        x = np.array(np.load(movie, mmap_mode="r")[:20])
        t = time.perf_counter()
        for f in x:
            imagecodecs.jpegxl_encode(f, lossless=True, effort=1, numthreads=1)
        rows["jxl_GBs"] = x.nbytes / 1e9 / (time.perf_counter() - t)
    finally:
        for path in (movie, out, tiny):
            if os.path.exists(path):
                os.unlink(path)
    rows["load"] = os.getloadavg()
    rows["emcs"] = {label: subprocess.run([sys.executable, "-c", "import emcs; print(emcs.__file__)"],
                                          env=_tree_env(tree), cwd=tempfile.gettempdir(), text=True,
                                          capture_output=True).stdout.strip()
                    for label, (tree, _extra) in trees.items()}
    rows["GB"] = nbytes / 1e9
    return rows



def _print_disk(rows: dict, T: int, size: int, B: int) -> None:
    print(f"\n## Whole process, {T} x {size}^2 uint16 ({rows['GB']:.1f} GB) from the page cache, B = {B}\n")
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in rows['load'])}; "
          f"JPEG XL lossless effort 1, one thread, in memory: {rows['jxl_GBs']:.3f} GB/s; "
          f"`python -c pass`: {rows['python -c pass']:.2f} s; emcs imported from {rows['emcs']}; "
          f"CPU steal time during the encodes: {100 * rows['steal']:.0f} %\n")
    print("| tree | GB/s per run | best GB/s | best / JPEG XL e1 | CPU s per run | GB per CPU s "
          "| peak RSS MB | output MB | `encode --help` s | tiny encode s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, r in rows.items():
        if not isinstance(r, dict) or label == "emcs":
            continue
        best = max(r["runs"])
        print(f"| {label} | {', '.join(f'{v:.2f}' for v in r['runs'])} | {best:.2f} | "
              f"{best / rows['jxl_GBs']:.1f}x | {', '.join(f'{v:.1f}' for v in r['cpu'])} | "
              f"{rows['GB'] / min(r['cpu']):.2f} | {r['peak']:.0f} | {r['output_MB']:.0f} | {r['help']:.2f} | "
              f"{r['tiny']:.2f} |")


def _drift_scene(img: np.ndarray, B: int = 8, size: int = 256) -> np.ndarray:
    """B frames of a photo drifting by (0.7, 1.5) px per frame, in [0, 1] (video-SCI convention)."""
    from scipy.ndimage import shift

    img = img.astype(np.float64) / 255
    frames = [shift(img, (0.7 * b, 1.5 * b), order=3, mode="reflect")[128 : 128 + size, 128 : 128 + size]
              for b in range(B)]
    return np.clip(np.stack(frames), 0, 1).astype(np.float32)


def bench_quality(quick: bool) -> list[dict]:
    """GAP-TV PSNR after encoding: video-SCI convention scenes and the example EM movie."""
    import torch
    from skimage import data

    from emcs.io import read_stack
    from emcs.tcs.decode import GAPTV_SETTINGS
    from emcs.tcs.gaptv import gap_tv, naive_estimate
    from emcs.tcs.masks import make_masks
    from emcs.tcs.operator import TcsOperator, encode_group

    torch.set_num_threads(1)
    rows = []
    size = 128 if quick else 256
    masks = make_masks(3, 8, size, size)
    for name in ("camera", "brick", "grass", "moon"):
        x = _drift_scene(getattr(data, name)(), 8, size)
        x8 = np.round(x * 255).astype(np.uint8)  # 8-bit frames, as in the benchmark
        y = encode_group(x8, masks).astype(np.float32) / 255
        ref = x8.astype(np.float64) / 255

        def psnr(z, ref=ref):
            return 10 * np.log10(1.0 / np.mean((np.clip(z, 0, 1) - ref) ** 2))

        row = {"scene": f"{name} (skimage), drift", "naive": psnr(naive_estimate(y, masks))}
        for level in ("low", "high"):
            t = time.perf_counter()
            row[level] = psnr(gap_tv(y, masks, iters=40, **GAPTV_SETTINGS[level]))
            row[level + "_s"] = time.perf_counter() - t
        rows.append(row)
    ex = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "emcs", "examples")
    if os.path.exists(os.path.join(ex, "au_movie.tif")):
        raw, _ = read_stack(os.path.join(ex, "au_movie.tif"))
        clean, _ = read_stack(os.path.join(ex, "au_movie_truth.tif"))
        raw = raw[:10]
        clean = clean[:10].astype(np.float64)
        H, W = raw.shape[1:]
        m = make_masks(5, 10, H, W)
        lo, hi = float(raw.min()), float(raw.max())
        y = TcsOperator.from_masks(m).scale_measurements(encode_group(raw, m)[None], (lo, hi))[0]
        ref = (clean - lo) / (hi - lo)
        rng = float(ref.max() - ref.min())

        def psnr_em(z):
            return 10 * np.log10(rng**2 / np.mean((z - ref) ** 2))

        row = {"scene": "examples/au_movie.tif frames 0-9 (shot noise) vs clean", "naive": psnr_em(naive_estimate(y, m))}
        for level in ("low", "high"):
            t = time.perf_counter()
            row[level] = psnr_em(np.clip(gap_tv(y, m, iters=40, **GAPTV_SETTINGS[level]), 0, 1))
            row[level + "_s"] = time.perf_counter() - t
        rows.append(row)
    return rows


#: label -> (pack, quantize) of the round-trip part
ROUNDTRIP_MODES = {"none": ("none", None), "zstd": ("zstd", None), "jpegxl": ("jpegxl", None),
                   "predictive": ("predictive", None), "predictive, quantize 1": ("predictive", 1.0)}


def bench_roundtrip(n: int = 40, size: int = 512, B: int = 10) -> list[dict]:
    """Encode (``encode_stack``) and decode (``emcs decode`` without its decoder) seconds per pack mode."""
    import emcs.tcs.gaptv as gaptv
    from emcs.cli import app
    from emcs.tcs.encode import encode_stack

    def no_decoder(y, operator, **_):
        return np.zeros((len(y), operator.B, *y.shape[1:]), np.float32)

    T = n * B
    x = np.random.default_rng(2).poisson(20.0, (T, size, size)).astype(np.uint16)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "m.npy")
        np.save(src, x)
        npz, rec = os.path.join(tmp, "m.npz"), os.path.join(tmp, "rec.npy")
        for label, (pack, q) in ROUNDTRIP_MODES.items():
            t_enc, res = _best(lambda p=pack, q=q: encode_stack(src, npz, B=B, seed=1, pack=p, quantize=q,
                                                                force=True))
            args = ["decode", npz, "-o", rec, "--method", "gap-tv", "--device", "cpu", "--quiet", "--force"]
            gap_tv, gaptv.gap_tv = gaptv.gap_tv, no_decoder
            try:
                t_dec, _ = _best(lambda a=args: app(a, standalone_mode=False), repeats=2)
            finally:
                gaptv.gap_tv = gap_tv
            rows.append({"mode": label, "shape": f"{T}x{size}x{size}", "encode_s": t_enc, "decode_s": t_dec,
                         "ratio": res["ratio"], "MB": x.nbytes / 1e6})
    return rows


def _print_roundtrip(rows: list[dict], B: int) -> None:
    print(f"\n## Encode and decode seconds per pack mode (uint16 counts, mean 20, B = {B})\n")
    print("decode: `emcs decode --method gap-tv --device cpu` in-process, GAP-TV replaced by a stand-in "
          "(the pipeline around the decoder)\n")
    print("| mode | frames | ratio | encode s | encode MB/s | decode s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['shape']} | {r['ratio']:.2f} | {r['encode_s']:.3f} | "
              f"{r['MB'] / r['encode_s']:.0f} | {r['decode_s']:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description="emcs encode benchmark")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("-B", type=int, default=10)
    parser.add_argument("--parts", default="speed,roundtrip,memory,quality",
                        help="comma-separated subset of speed, roundtrip, memory, quality, disk")
    parser.add_argument("--base", help="disk: a checkout of the tree to compare with (e.g. before a change)")
    parser.add_argument("--frames", type=int, default=2000, help="disk: movie length (1024 x 1024 frames)")
    parser.add_argument("--adaptive", action="store_true", help="disk: also encode with --adaptive")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    print(f"# emcs encode benchmark\n\nmachine: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, python {platform.python_version()}, numpy {np.__version__}\n"
          f"command: python benchmarks/bench_encode.py {' '.join(sys.argv[1:])}\n")
    if "speed" in parts:
        _print_speed(bench_throughput(load_frames(args.quick), args.B), args.B)
    if "roundtrip" in parts:
        _print_roundtrip(bench_roundtrip(B=args.B), args.B)
    if "memory" in parts:
        lengths = [20, 80] if args.quick else [100, 400, 1600]
        size = 256 if args.quick else 512
        _print_memory(bench_memory(lengths, size, args.B), size, args.B)
    if "disk" in parts:
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        trees = (({"before (--base)": (args.base, [])} if args.base else {}) | {"this tree": (here, [])}
                 | ({"this tree, --adaptive": (here, ["--adaptive"])} if args.adaptive else {}))
        size = 256 if args.quick else 1024
        _print_disk(bench_disk(args.frames, size, args.B, trees), args.frames, size, args.B)
    if "quality" in parts:
        rows = bench_quality(args.quick)
        print("\n## What a measurement is worth: GAP-TV after encoding (one thread, 40 iterations)\n")
        print("B = 8, 8-bit frames scaled to [0, 1] (video-SCI convention), generated masks, density 0.5; "
              "the EM row: B = 10 on the example movie, PSNR vs the clean frames (range = their max - min).\n")
        print("| scene | naive Y/sum(C) dB | GAP-TV `--noise low` dB (s) | GAP-TV `--noise high` dB (s) |")
        print("|---|---|---|---|")
        for r in rows:
            print(f"| {r['scene']} | {r['naive']:.2f} | {r['low']:.2f} ({r['low_s']:.1f}) | "
                  f"{r['high']:.2f} ({r['high_s']:.1f}) |")


def _print_speed(rows: list[dict], B: int) -> None:
    print(f"## Throughput, one core, B = {B}\n")
    print("| frames | shape | MB | TCS kernel MB/s | emcs encode MB/s (end to end) | TCS ratio "
          "| zstd-3 MB/s | zstd ratio | JPEG XL lossless e3 MB/s | JXL ratio "
          "| kernel / zstd speed | kernel / JXL speed |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['frames']} | {r['shape']} | {r['MB']:.1f} | {r['tcs_kernel_MBs']:.0f} | "
              f"{r['tcs_e2e_MBs']:.0f} | {r['tcs_ratio']:.2f} | {r['zstd_MBs']:.0f} | {r['zstd_ratio']:.2f} | "
              f"{r['jxl_MBs']:.1f} | {r['jxl_ratio']:.2f} | {r['tcs_kernel_MBs'] / r['zstd_MBs']:.1f}x | "
              f"{r['tcs_kernel_MBs'] / r['jxl_MBs']:.0f}x |")


def _print_memory(mem: list[dict], size: int, B: int) -> None:
    print(f"\n## Peak memory of `emcs encode` vs movie length ({size}x{size} uint16, B = {B})\n")
    print("| input | frames | movie MB | peak RSS MB | peak anonymous MB | peak file-backed MB | seconds | MB/s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in mem:
        print(f"| {r['input']} | {r['T']} | {r['movie_MB']:.0f} | {r['VmRSS']:.0f} | {r['RssAnon']:.0f} | "
              f"{r['RssFile']:.0f} | {r['seconds']:.1f} | {r['MBs']:.0f} |")


if __name__ == "__main__":
    main()

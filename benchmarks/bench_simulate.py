"""Simulation throughput per kind (frames per second), one process, one thread.

Measures, on this machine:

1. ``emcs.simulate.movie`` (what ``emcs simulate`` runs) per kind at 256x256
   (HRTEM kinds after the one-off abTEM start-up, which is timed separately);
2. the fast training samplers: ``sample_movie`` (16 frames, per kind, 128x128
   and 256x256) and ``sample_stem`` (256x256), after warm-up;
3. the cache build time recorded in the cache index (``build_cache``);
4. the training-data generators of ``emcs train``: a TCS clip
   (``emcs.simulate.clips.training_clip``, B = 10, 64x64), a DLSS pair
   (``emcs.simulate.textures.clean_image`` + ``degrade``, 128x128) and a noisy SIM
   wide-field input (``emcs.simulate.fluorescence.noisy_widefield``, 160x160).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_simulate.py [--out benchmarks/simulate.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

FAST = ("fibres", "lattice", "cells", "haadf-crystal", "haadf-particle")
HRTEM = ("hrtem-particle", "hrtem-sintering")
SAMPLED = ("hrtem-particle", "hrtem-sintering", "haadf-crystal", "haadf-particle", "fibres", "lattice", "cells")


def _time(fn, repeat: int) -> tuple[float, float]:
    """Mean (wall, CPU) seconds per call; CPU time is what an idle core would need."""
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat, (time.process_time() - c0) / repeat


def _training_rows() -> list[tuple[str, float, float]]:
    """(generator, wall s, CPU s) per sample of the three training-data generators."""
    from emcs.simulate import clips, fluorescence, textures

    rng = np.random.default_rng(0)
    wide = fluorescence.clean_widefield(
        fluorescence.render_structure("mixed", (320, 320), 40.0, rng), fluorescence.Optics())
    wide = (wide / np.percentile(wide, 99)).astype(np.float32)
    cases = {
        "TCS clip, B = 10, 64x64 (`clips.training_clip`)": lambda: clips.training_clip(rng, 10, 64),
        "DLSS pair, 128x128 (`textures.clean_image` + `degrade`)":
            lambda: textures.degrade(rng, textures.clean_image(rng, 128, simulated=True)),
        "SIM noisy wide-field, 160x160 (`fluorescence.noisy_widefield`)":
            lambda: fluorescence.noisy_widefield(wide, rng),
    }
    rows = []
    for name, fn in cases.items():
        for _ in range(5):
            fn()
        rows.append((name, *_time(fn, 20)))
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="emcs simulation throughput")
    parser.add_argument("--out", help="write a markdown report here")
    parser.add_argument("--frames", type=int, default=20, help="frames per movie for fast kinds")
    parser.add_argument("--hrtem-frames", type=int, default=8, help="frames per HRTEM movie")
    args = parser.parse_args()

    from emcs.simulate import cache_status, movie, sample_movie, sample_stem

    load0 = os.getloadavg()[0]
    rows_movie = []
    for kind in FAST:
        frames = args.frames if not kind.startswith("haadf") else 10
        movie(kind, 2, (64, 64), seed=0)  # warm-up (imports, probe)
        dt, cpu = _time(lambda k=kind, f=frames: movie(k, f, (256, 256), seed=1, dose=100.0), 2)
        rows_movie.append((kind, frames, frames / dt, dt / frames * 1e3, cpu / frames * 1e3))
        print(rows_movie[-1], flush=True)
    t0 = time.perf_counter()
    movie("hrtem-particle", 1, (256, 256), seed=0)  # abTEM import, numba JIT, FFTW plans for 256x256
    startup = time.perf_counter() - t0
    for kind in HRTEM:
        dt, cpu = _time(lambda k=kind: movie(k, args.hrtem_frames, (256, 256), seed=1, dose=100.0), 1)
        f = args.hrtem_frames
        rows_movie.append((kind, f, f / dt, dt / f * 1e3, cpu / f * 1e3))
        print(rows_movie[-1], flush=True)

    status = cache_status()
    rows_sample = []
    for size in ((128, 128), (256, 256)):
        for kind in SAMPLED:
            rng = np.random.default_rng(0)
            for _ in range(3):
                sample_movie(rng, 16, size, kinds=[kind])
            dt, cpu = _time(lambda k=kind, s=size, r=rng: sample_movie(r, 16, s, kinds=[k]), 10)
            rows_sample.append((kind, f"{size[0]}x{size[1]}", dt * 1e3, cpu * 1e3, 16 / cpu))
            print(rows_sample[-1], flush=True)
    rng = np.random.default_rng(0)
    for _ in range(60):
        sample_stem(rng, (256, 256))
    dt_stem, cpu_stem = _time(lambda: sample_stem(rng, (256, 256)), 50)
    print("sample_stem", dt_stem, flush=True)
    rows_training = _training_rows()

    lines = [
        "# Simulation throughput",
        "",
        f"Machine: {platform.processor() or platform.machine()}, 2-core CPU shared with other jobs, no GPU; "
        f"one process, OMP_NUM_THREADS=1; numpy {np.__version__}. Date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"load average during the run {load0:.1f} -> {os.getloadavg()[0]:.1f} (the 2 cores were shared, so wall "
        "times are inflated; CPU time per call is what one free core needs).",
        "",
        "Command: `OMP_NUM_THREADS=1 python benchmarks/bench_simulate.py --out benchmarks/simulate.md`",
        "",
        "## `emcs simulate` / `emcs.simulate.movie` at 256x256 (dose 100 e/Å², shot noise)",
        "",
        "| kind | frames | frames/s (wall) | ms/frame (wall) | ms/frame (CPU) | frames/s on one free core |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {k} | {f} | {fps:.1f} | {ms:.0f} | {c:.0f} | {1e3 / c:.1f} |" for k, f, fps, ms, c in rows_movie]
    lines += [
        "",
        f"HRTEM kinds also pay a one-off start-up of **{startup:.1f} s** per process (abTEM import, numba JIT, "
        "first FFTs; numpy FFT, chosen for bit-for-bit reproducibility). HAADF movies render one specimen and resample it per frame with scan drift.",
        "",
        "## Fast training samplers (clean, in [0, 1])",
        "",
        f"Cache: {'present' if status.get('ready') else 'absent'}"
        + (f" (built by `emcs.simulate.build_cache(n={status.get('n')})` in {status.get('seconds')} s, "
           f"{status.get('n', 0) * 6 + 16} abTEM exit waves at {status.get('grid')}x{status.get('grid')})"
           if status.get("ready") else " (HRTEM kinds fall back to procedural ones)") + ".",
        "",
        "| kind | size | ms per 16-frame movie (wall) | ms (CPU) | frames/s on one free core |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {k} | {s} | {ms:.0f} | {c:.0f} | {fps:.0f} |" for k, s, ms, c, fps in rows_sample]
    lines += [
        "",
        f"`sample_stem(rng, (256, 256))`: **{dt_stem * 1e3:.1f} ms** wall, {cpu_stem * 1e3:.1f} ms CPU per image.",
        "",
        "## Training data of `emcs train` (per sample, after warm-up)",
        "",
        "| generator | ms (wall) | ms (CPU) |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {dt * 1e3:.1f} | {cpu * 1e3:.1f} |" for name, dt, cpu in rows_training]
    lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()

"""Benchmark the codec baselines of ``emcs compare``: speed, ratio and quality.

Data:
- real serial-section TEM, ``../shared/data/isbi2012-sstem/sstem_30x512x512_uint8.tif``
  (ISBI 2012 challenge, Cardona et al., PLoS Biol 8:e1000502, 2010), the first
  ``--frames`` frames, uint8;
- a 16-bit simulated HAADF-STEM series: the real 512x512 STEM crop
  ``../shared/data/stem-partial-scan/truth-2.tif`` (MIT, J. Ede) as the
  clean signal, turned into detector counts ``Poisson(2000 + 6000 * x)``
  (uint16, a narrow part of the 16-bit range like a real STEM detector),
  ``--frames`` independent noise realisations.

For every codec and a few settings the frames go through
:func:`emcs.compare.codec_frames.encode_frames` / :func:`decode_frames` exactly as
``emcs compare`` uses them (uint8 as is; uint16 with the per-frame linear
stretch, 8 bytes per frame counted; lossless modes get uint16 unstretched).
For the 16-bit data the per-frame stretch is also compared with no stretch.
Speeds are MB of raw pixels per second on
ONE thread (imagecodecs ``numthreads=1``), the best of ``--repeats`` runs
(the machine is shared, so the best run is the least disturbed one). Ratio =
raw bytes / (codestreams + stretch bytes). PSNR (data range = max - min of the
stack) and SSIM (Gaussian, sigma 1.5) are against the input frames. Then
:func:`encode_at_budget` is timed at 1/8 and 1/20 of the raw size.

Usage::

    python benchmarks/bench_codecs.py --frames 10 --repeats 3 --out benchmarks/codecs-results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from emcs.compare.codec_frames import CODEC_LABELS, CODECS, decode_frames, encode_frames
from emcs.compare.codecs import encode_at_budget
from emcs.compare.metrics import score_stack

# real data live beside the checkout in ../shared/data; EMCS_SHARED_DATA overrides
SHARED_DATA = Path(os.environ.get("EMCS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SSTEM = str(SHARED_DATA / "isbi2012-sstem" / "sstem_30x512x512_uint8.tif")
STEM = str(SHARED_DATA / "stem-partial-scan" / "truth-2.tif")

SETTINGS = {
    "jpeg": [("q 50", 50, False), ("q 75", 75, False), ("q 90", 90, False), ("q 95", 95, False)],
    "jpeg2000": [
        ("30 dB target", 30.0, False),
        ("40 dB target", 40.0, False),
        ("50 dB target", 50.0, False),
        ("lossless", None, True),
    ],
    "jpegxl": [
        ("d 4", 4.0, False),
        ("d 2", 2.0, False),
        ("d 1", 1.0, False),
        ("d 0.5", 0.5, False),
        ("lossless", None, True),
    ],
}


def load_data(n_frames: int) -> dict[str, np.ndarray]:
    import tifffile

    sstem = tifffile.imread(SSTEM)[:n_frames]
    clean = tifffile.imread(STEM).astype(np.float64)
    rng = np.random.default_rng(0)
    stem16 = np.stack([rng.poisson(2000 + 6000 * clean) for _ in range(n_frames)]).astype(np.uint16)
    return {"sstem uint8 (real)": sstem, "STEM uint16 (simulated counts)": stem16}


def best_time(fn, repeats: int):
    best, out = np.inf, None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench_settings(frames: np.ndarray, repeats: int) -> list[dict]:
    rows = []
    mb = frames.nbytes / 1e6
    for codec in CODECS:
        for label, setting, lossless in SETTINGS[codec]:
            t_enc, (streams, params, mode) = best_time(
                lambda c=codec, s=setting, ll=lossless: encode_frames(frames, c, s, ll), repeats
            )
            t_dec, decoded = best_time(
                lambda c=codec, st=streams, p=params: decode_frames(st, c, p, frames.dtype), repeats
            )
            nbytes = sum(len(b) for b in streams) + (0 if params is None else 8 * len(frames))
            s = score_stack(decoded, frames)
            rows.append(
                {
                    "codec": codec,
                    "setting": label,
                    "stretch": mode,
                    "nbytes": nbytes,
                    "ratio": frames.nbytes / nbytes,
                    "bits_per_pixel": 8 * nbytes / frames.size,
                    "psnr_stack": s["psnr_stack"],
                    "ssim_mean": s["ssim_mean"],
                    "encode_MBps": mb / t_enc,
                    "decode_MBps": mb / t_dec,
                }
            )
            print(_row_md(rows[-1]), flush=True)
    return rows


def bench_stretch(frames: np.ndarray) -> list[dict]:
    """Per-frame stretch vs none for the 16-bit codecs (same data, several settings)."""
    rows = []
    grid = {
        ("jpeg2000", "frame"): [30.0, 40.0, 50.0],
        ("jpeg2000", "none"): [50.0, 60.0, 70.0],  # the dB target is relative to 65535
        ("jpegxl", "frame"): [4.0, 2.0, 1.0, 0.5],
        ("jpegxl", "none"): [2.0, 1.0, 0.5, 0.25],
    }
    for (codec, stretch), settings in grid.items():
        for setting in settings:
            streams, params, mode = encode_frames(frames, codec, setting, False, stretch)
            decoded = decode_frames(streams, codec, params, frames.dtype)
            nbytes = sum(len(b) for b in streams) + (0 if params is None else 8 * len(frames))
            s = score_stack(decoded, frames)
            rows.append({"codec": codec, "stretch": mode, "setting": setting,
                         "ratio": frames.nbytes / nbytes, "psnr_stack": s["psnr_stack"],
                         "ssim_mean": s["ssim_mean"]})
            r = rows[-1]
            print(f"| {CODEC_LABELS[codec]} | {mode} | {setting:g} | {r['ratio']:.2f} | "
                  f"{_f(r['psnr_stack'], 2)} | {_f(r['ssim_mean'], 4)} |", flush=True)
    return rows


def bench_budget(frames: np.ndarray) -> list[dict]:
    rows = []
    for ratio in (8, 20):
        budget = frames.nbytes // ratio
        for codec in CODECS:
            t = time.perf_counter()
            res = encode_at_budget(frames, codec, budget)
            dt = time.perf_counter() - t
            s = score_stack(res.decoded, frames) if res.ok else None
            rows.append(
                {
                    "codec": codec,
                    "budget_ratio": ratio,
                    "budget_bytes": budget,
                    "nbytes": res.nbytes,
                    "setting": res.setting_text(),
                    "trials": res.trials,
                    "seconds": dt,
                    "psnr_stack": None if s is None else s["psnr_stack"],
                    "ssim_mean": None if s is None else s["ssim_mean"],
                }
            )
            r = rows[-1]
            print(
                f"| 1/{ratio} | {CODEC_LABELS[codec]} | {r['setting']} | {r['nbytes']} / {budget} | "
                f"{_f(r['psnr_stack'], 2)} | {_f(r['ssim_mean'], 4)} | {r['trials']} | {dt:.1f} |",
                flush=True,
            )
    return rows


def _f(v, d):
    if v is None:
        return "-"
    return "inf" if np.isinf(v) else f"{v:.{d}f}"


def _row_md(r: dict) -> str:
    return (
        f"| {CODEC_LABELS[r['codec']]} | {r['setting']} | {r['ratio']:.2f} | "
        f"{r['bits_per_pixel']:.3f} | {_f(r['psnr_stack'], 2)} | {_f(r['ssim_mean'], 4)} | "
        f"{r['encode_MBps']:.1f} | {r['decode_MBps']:.1f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="write all results as JSON here")
    args = ap.parse_args()

    import imagecodecs

    info = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "python": platform.python_version(),
        "imagecodecs": imagecodecs.__version__,
        "libjpeg": imagecodecs.jpeg8_version(),
        "openjpeg": imagecodecs.jpeg2k_version(),
        "libjxl": imagecodecs.jpegxl_version(),
        "frames": args.frames,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
    }
    print(json.dumps(info))
    results = {"info": info, "data": {}}
    for name, frames in load_data(args.frames).items():
        print(f"\n### {name}: {frames.shape} {frames.dtype}, raw {frames.nbytes} bytes\n")
        print("| codec | setting | ratio | bit/px | PSNR dB | SSIM | encode MB/s | decode MB/s |")
        print("|---|---|---|---|---|---|---|---|")
        settings = bench_settings(frames, args.repeats)
        print("\n| budget | codec | setting found | bytes / budget | PSNR dB | SSIM | trials | seconds |")
        print("|---|---|---|---|---|---|---|---|")
        budget = bench_budget(frames)
        results["data"][name] = {
            "shape": list(frames.shape),
            "dtype": str(frames.dtype),
            "settings": settings,
            "budget_search": budget,
        }
        if frames.dtype == np.uint16:
            print("\n| codec | stretch | setting | ratio | PSNR dB | SSIM |")
            print("|---|---|---|---|---|---|")
            results["data"][name]["stretch_vs_none"] = bench_stretch(frames)
    results["info"]["load_average_at_end"] = os.getloadavg()
    print(json.dumps({"load_average_at_end": results["info"]["load_average_at_end"]}))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=1, default=float)


if __name__ == "__main__":
    main()

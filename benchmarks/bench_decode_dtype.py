"""Decoded pixel type: float32 vs rounded to the input's integer type (benchmarks/decode_dtype.md).

Encodes the demo movie (emcs/examples/au_movie.tif, uint8 camera counts, ~9 counts/px),
decodes it with each decoder twice (``--dtype float32`` and ``--dtype input``) and scores both
with ``emcs compare`` against the clean truth (au_movie_truth.tif) and the raw movie.

    python benchmarks/bench_decode_dtype.py [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from emcs.examples import example_path


def emcs(*args) -> str:
    return subprocess.run(["emcs", *map(str, args)], check=True, capture_output=True, text=True).stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=None, help="Working folder (default: a temporary one).")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="emcs-dtype-"))
    raw, truth = example_path("au_movie.tif"), example_path("au_movie_truth.tif")
    rows = []
    for B in (10, 20):
        npz = work / f"au_B{B}.npz"
        emcs("encode", raw, "-o", npz, "-B", B, "--seed", 7, "--force", "--quiet")
        for method in ("gap-tv", "tcs-unfold"):
            for dtype in ("float32", "input"):
                out = work / f"au_B{B}_{method}_{dtype}.npy"
                emcs("decode", npz, "-o", out, "--method", method, "--dtype", dtype, "--device", "cpu",
                     "--force", "--quiet")
                score = json.loads(emcs("compare", out, raw, "--truth", truth, "--baselines", "none",
                                        "--json"))["results"]["emcs"]
                rows.append({"B": B, "method": method, "dtype": dtype,
                             "distinct_values": int(np.unique(np.load(out)).size),
                             "psnr_truth": score["vs_truth"]["psnr_mean"],
                             "ssim_truth": score["vs_truth"]["ssim_mean"],
                             "psnr_raw": score["vs_reference"]["psnr_mean"]})
                print(json.dumps(rows[-1]))
    (work / "decode_dtype.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

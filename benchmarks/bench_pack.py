"""Lossless packing of TCS measurements: container size and encode speed.

For each B and a few simulated kinds, a 512x512 movie of 3 B frames at
``--dose`` counts/pixel (uint16 camera counts, as ``bench_tcs_nets.py``
simulates them) is written as TIFF and encoded end to end with
``emcs.tcs.encode.encode_stack`` four times: ``pack="none"`` (version 1,
memory-mappable), ``"zstd"`` and ``"jpegxl"`` (version 2), and ``"jpegxl"``
with ``quantize=1`` (version 3, lossy within the shot noise). Reported: the
honest ratio (input pixel bytes / container file bytes) and the end-to-end
encode throughput (input MB/s, file I/O included). The example movie
(``examples/au_movie.tif``, uint8, ~9 counts/pixel) is included.

    python benchmarks/bench_pack.py --json benchmarks/pack.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

KINDS = ("hrtem-particle", "haadf-crystal", "fibres")
#: label -> (pack, quantize step)
MODES = {"none": ("none", None), "zstd": ("zstd", None), "jpegxl": ("jpegxl", None), "jpegxl-q1": ("jpegxl", 1.0)}


def run(src: Path, B: int, tmp: Path) -> dict:
    from emcs.tcs.encode import encode_stack

    out = {}
    for label, (pack, q) in MODES.items():
        dst = tmp / f"{src.stem}-{label}.npz"
        t = time.perf_counter()
        res = encode_stack(src, dst, B=B, seed=1, pack=pack, quantize=q, force=True)
        dt = time.perf_counter() - t
        out[label] = {"ratio": res["ratio"], "bytes": res["output_bytes"], "mb_per_s": res["input_bytes"] / 1e6 / dt,
                     "codec": res.get("measurement_codec"), "measurement_dtype": res["measurement_dtype"]}
    return out


def main() -> None:
    import bench_tcs_nets as b

    from emcs.io import write_stack

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--dose", type=float, default=50.0)
    ap.add_argument("--B", type=lambda s: [int(v) for v in s.split(",")], default=[10, 20, 30])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        example = Path(__file__).resolve().parents[1] / "examples" / "au_movie.tif"
        if example.exists():
            rows.append({"movie": "examples/au_movie.tif (uint8)", "B": 10, **run(example, 10, tmp)})
        for B in args.B:
            for k, kind in enumerate(KINDS):
                _, counts, _ = b.simulate(kind, 3 * B, args.size, args.dose, b.HELDOUT_SEED + 7000 + k)
                src = tmp / f"{kind}-B{B}.tif"
                write_stack(src, counts.astype(np.uint16))
                rows.append({"movie": f"{kind} {args.size}x{args.size} {3 * B} frames uint16", "B": B,
                             **run(src, B, tmp)})
    print("| movie | B | ratio none | ratio zstd | ratio jpegxl | jpegxl / none | ratio jpegxl + quantize 1 "
          "| quantized / jpegxl | MB/s none | MB/s zstd | MB/s jpegxl | MB/s quantized |")
    print("|---" * 12 + "|")
    for r in rows:
        print(f"| {r['movie']} | {r['B']} | {r['none']['ratio']:.2f} | {r['zstd']['ratio']:.2f} | "
              f"{r['jpegxl']['ratio']:.2f} ({r['jpegxl']['codec']}) | {r['jpegxl']['ratio'] / r['none']['ratio']:.2f} | "
              f"{r['jpegxl-q1']['ratio']:.2f} | {r['jpegxl-q1']['ratio'] / r['jpegxl']['ratio']:.2f} | "
              f"{r['none']['mb_per_s']:.0f} | {r['zstd']['mb_per_s']:.0f} | {r['jpegxl']['mb_per_s']:.0f} | "
              f"{r['jpegxl-q1']['mb_per_s']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "settings": {k: v for k, v in vars(args).items() if k != "json"}},
                                        indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()

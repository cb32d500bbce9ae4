"""Lossless packing of TCS measurements: container size and encode speed.

For each B and a few simulated kinds, a 512x512 movie of 3 B frames at
``--dose`` counts/pixel (uint16 camera counts, as ``bench_tcs_nets.py``
simulates them) is written as TIFF and encoded end to end with
``emcs.tcs.encode.encode_stack`` six times: ``pack="none"`` (version 1,
memory-mappable), ``"zstd"`` and ``"jpegxl"`` (version 2), ``"predictive"``
(version 4: the known masks divided out before prediction), and ``"jpegxl"``
and ``"predictive"`` with ``quantize=1`` (versions 3 and 4, lossy within the
shot noise). Reported: the
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
MODES = {"none": ("none", None), "zstd": ("zstd", None), "jpegxl": ("jpegxl", None),
         "predictive": ("predictive", None), "jpegxl-q1": ("jpegxl", 1.0), "predictive-q1": ("predictive", 1.0)}


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
        example = Path(__file__).resolve().parents[1] / "emcs" / "examples" / "au_movie.tif"
        if example.exists():
            rows.append({"movie": "examples/au_movie.tif (uint8)", "B": 10, **run(example, 10, tmp)})
        for B in args.B:
            for k, kind in enumerate(KINDS):
                _, counts, _ = b.simulate(kind, 3 * B, args.size, args.dose, b.HELDOUT_SEED + 7000 + k)
                src = tmp / f"{kind}-B{B}.tif"
                write_stack(src, counts.astype(np.uint16))
                rows.append({"movie": f"{kind} {args.size}x{args.size} {3 * B} frames uint16", "B": B,
                             **run(src, B, tmp)})
    print("\n**Ratio** (input pixel bytes / container file bytes)\n")
    print("| movie | B | " + " | ".join(MODES) + " | predictive / jpegxl | predictive-q1 / jpegxl-q1 |")
    print("|---" * (len(MODES) + 4) + "|")
    for r in rows:
        print(f"| {r['movie']} | {r['B']} | " + " | ".join(f"{r[m]['ratio']:.2f}" for m in MODES)
              + f" | {r['predictive']['ratio'] / r['jpegxl']['ratio']:.2f}"
              + f" | {r['predictive-q1']['ratio'] / r['jpegxl-q1']['ratio']:.2f} |")
    print("\n**End-to-end encode speed** (input MB/s, file I/O included)\n")
    print("| movie | B | " + " | ".join(MODES) + " |")
    print("|---" * (len(MODES) + 2) + "|")
    for r in rows:
        print(f"| {r['movie']} | {r['B']} | " + " | ".join(f"{r[m]['mb_per_s']:.0f}" for m in MODES) + " |")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "settings": {k: v for k, v in vars(args).items() if k != "json"}},
                                        indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()

"""Probe (session 12): the average of two DLSS networks' default outputs, blurred target.

Each network runs as ``emcs supersample`` does by default (``--target blurred``, safeguard on);
the two outputs are averaged. Scored as net RMSE / plain-bilinear RMSE against the blurred full
scan, on the tuning scans (``tune``) or on the public crops and held-out crystals (``held``).
Results are in ``benchmarks/dlss.md`` (session 12); the second network was session 11's
fine-tune A (``emcs train dlss --target blurred``), not shipped::

    EMCS_SHARED_DATA=/work/shared/data python benchmarks/dlss_pair_s12.py held \\
        --second /work/train/dlss11/dlss-unet-blur.safetensors --out pair_held.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    import dlss_finetune
    import dlss_heldout
    import torch
    from bench_dlss import blur

    from emcs.dlss.interp import upsample
    from emcs.dlss.sampling import subsample
    from emcs.dlss.supersample import load_default_model, supersample_frame

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("which", choices=("tune", "held"))
    ap.add_argument("--second", required=True, help="the second network's weights (.safetensors)")
    ap.add_argument("--out", help="write the rows as JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)
    dev = torch.device("cpu")
    nets = {"shipped": load_default_model(None, dev)[0], "second": load_default_model(args.second, dev)[0]}
    imgs = ([(n, im) for n, im, _ in dlss_heldout.tuning(8)] if args.which == "tune"
            else dlss_finetune.images(8, 0))
    rows = []
    for name, img in imgs:
        ref = blur(img)
        for s in (4, 6, 8, 10):
            sp = subsample(img, s)
            outs = {k: supersample_frame(sp, s, img.shape, "net", m, dev, target="blurred") for k, m in nets.items()}
            outs["pair"] = 0.5 * (outs["shipped"] + outs["second"])
            outs["bilinear"] = upsample(sp, s, img.shape, "bilinear")
            rows += [{"image": name, "factor": s, "method": k, "target": "blurred",
                      "rmse": float(np.sqrt(np.mean((o - ref) ** 2)))} for k, o in outs.items()]
            print(name, s, {r["method"]: round(r["rmse"], 5) for r in rows[-len(outs):]}, flush=True)
    for group in sorted({r["image"].split(":")[0] for r in rows}):
        for m in ("shipped", "second", "pair"):
            v = [dlss_finetune.ratio(rows, group, "blurred", m, s) for s in (4, 6, 8, 10)]
            print(f"{group} {m}: " + " / ".join(f"{x:.3f}" for x in v) + f" (mean {np.mean(v):.3f})")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Compare DLSS weights on the held-out sets, default mode: net / bilinear RMSE per coverage.

Scores each model on the same images: the five public crops (``real``,
``../shared/data/stem-partial-scan``, never in training), the held-out crystals of
:mod:`dlss_heldout` (``held``, seeds 9000+) and, with ``--n-own``, extra held-out
crystals of the same generator with other seeds (``own``, seeds 9500+) and, with
``--sstem``, serial-section TEM frames 4, 12, 20, 28 of ``../shared/data/isbi2012-sstem``
(``sstem``: real EM of another kind; training used frames 0, 8, 16, 24). Methods:
``net`` (``--no-safeguard --target scan``), ``net-sg`` (``--target scan``: safeguard on,
measured samples exact), ``net-blur`` / ``net-sg-blur`` (``--target blurred``, the default
since session 11: DLSS-STEM's blurred scan, without / with the safeguard; a network trained
on the blurred target is used as it is, a full-scan one is blurred afterwards),
``bilinear`` and ``bilinear-blur`` (``--method bilinear [--target blurred]``); ratios are
to plain ``bilinear``. Targets: the raw and the blurred full scan (:func:`bench_dlss.blur`). Only the net passes the default mode needs are run (one
output pass, one self-check pass), so a model takes a few minutes on one thread.

    EMCS_SHARED_DATA=/work/shared/data python benchmarks/dlss_finetune.py \\
        --model emcs/models/dlss-unet-s4-10.safetensors --label shipped --out before.json
    python benchmarks/dlss_finetune.py --table before.json after.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

FACTORS = (4, 6, 8, 10)
METHODS = ("net", "net-sg", "net-blur", "net-sg-blur", "bilinear-blur")


SSTEM_FRAMES = (4, 12, 20, 28)


def images(n_held: int, n_own: int, sstem: bool = False, real: bool = True,
           n_tune: int = 0) -> list[tuple[str, np.ndarray]]:
    """The evaluation images: public crops, held-out crystals, own held-out crystals, sstem frames,
    and the tuning scans (``tune``, :func:`dlss_heldout.tuning`: for choosing between candidates,
    never the held-out sets)."""
    import dlss_heldout
    from bench_dlss import SHARED_DATA, _norm, held_out

    out = held_out(0) if real else []
    out += [(name, img) for name, img, _ in dlss_heldout.heldout(n_held)]
    for i in range(n_own):
        rng = np.random.default_rng(9500 + i)
        clean, _ = dlss_heldout.crystal(rng, 512)
        out.append((f"own:{i}", dlss_heldout.scan(rng, clean)[0]))
    out += [(name, img) for name, img, _ in dlss_heldout.tuning(n_tune)]
    if sstem:
        import tifffile

        stack = tifffile.imread(SHARED_DATA / "isbi2012-sstem" / "sstem_30x512x512_uint8.tif")
        out += [(f"sstem:{k}", _norm(stack[k])) for k in SSTEM_FRAMES]
    return out


def rows_for(model_path: str, imgs, factors=FACTORS, threads: int = 1, ensemble: int = 1) -> list[dict]:
    """RMSE rows ``{image, factor, method, target, rmse}`` of one model (network output averaged
    over ``ensemble`` flips/rotations; the self-check is single-pass as in ``emcs supersample``)."""
    import torch
    from bench_dlss import blur

    from emcs.dlss.interp import upsample
    from emcs.dlss.safeguard import blend
    from emcs.dlss.sampling import grid_offset, subsample
    from emcs.dlss.smoothing import paper_blur
    from emcs.dlss.supersample import check_net, load_default_model, net_estimate, output_target

    torch.set_num_threads(threads)
    device = torch.device("cpu")
    model, _ = load_default_model(model_path, device)
    trained_blurred = output_target(model) == "blurred"
    rows = []
    for name, img in imgs:
        targets = {"raw": img, "blurred": blur(img)}
        for s in factors:
            t0 = time.time()
            sp = subsample(img, s)
            oy, ox = grid_offset(img.shape[0], s), grid_offset(img.shape[1], s)
            net = net_estimate(sp, s, img.shape, model, device, ensemble=ensemble)
            bil = upsample(sp, s, img.shape, "bilinear")
            bil_blur = paper_blur(bil)
            verdict = check_net(sp, s, img.shape, model, device)
            if trained_blurred:  # the network's output is the blurred-target estimate (the default mode)
                outs = {"bilinear": bil, "bilinear-blur": bil_blur, "net-blur": net,
                        "net-sg-blur": blend(net, bil_blur, verdict)}
            else:
                net[oy::s, ox::s] = sp
                outs = {"bilinear": bil, "bilinear-blur": bil_blur, "net": net, "net-sg": blend(net, bil, verdict)}
                outs.update({"net-blur": paper_blur(net), "net-sg-blur": paper_blur(outs["net-sg"])})
            for m, o in outs.items():
                for target, ref in targets.items():
                    rows.append({"image": name, "factor": s, "method": m, "target": target,
                                 "rmse": float(np.sqrt(np.mean((o - ref) ** 2))),
                                 "fallback_fraction": verdict.fallback_fraction})
            print(f"{name} s={s}: {time.time() - t0:.1f} s", file=sys.stderr, flush=True)
    return rows


def ratio(rows, group: str, target: str, method: str, s: int) -> float:
    """Mean RMSE of ``method`` / mean bilinear RMSE over the images of ``group``."""
    def mean(m):
        return float(np.mean([r["rmse"] for r in rows if r["image"].startswith(group + ":")
                              and r["target"] == target and r["method"] == m and r["factor"] == s]))
    return mean(method) / mean("bilinear")


def table(runs: list[dict]) -> str:
    """Markdown: one table per (group, target), one row per (model, method), a column per factor scored."""
    lines = []
    factors = sorted({r["factor"] for run in runs for r in run["rows"]})

    def has(run, g):
        return any(r["image"].startswith(g + ":") for r in run["rows"])

    for group in ("real", "held", "own", "sstem", "tune"):
        scored = [run for run in runs if has(run, group)]
        if not scored:
            continue
        for target in ("blurred", "raw"):
            lines += [f"\n**{group}, target = {target} full scan** (mean RMSE / mean bilinear RMSE)\n",
                      "| model | method | " + " | ".join(f"1/{s * s}" for s in factors) + " | mean |",
                      "|---" * (len(factors) + 3) + "|"]
            for run in scored:
                for m in [m for m in METHODS if any(r["method"] == m for r in run["rows"])]:
                    v = [ratio(run["rows"], group, target, m, s) for s in factors]
                    lines.append(f"| {run['label']} | {m} | " + " | ".join(f"{x:.3f}" for x in v)
                                 + f" | {np.mean(v):.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="weights to score (.safetensors)")
    ap.add_argument("--label", default="model")
    ap.add_argument("--n-held", type=int, default=8)
    ap.add_argument("--n-own", type=int, default=0)
    ap.add_argument("--sstem", action="store_true", help="also score four unused ISBI serial-section frames")
    ap.add_argument("--no-real", action="store_true", help="leave out the public crops")
    ap.add_argument("--n-tune", type=int, default=0, help="tuning scans (dlss_heldout.tuning) to add")
    ap.add_argument("--factors", default=",".join(map(str, FACTORS)),
                    help="grid pitches to score (comma-separated; coverage 1/s^2)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ensemble", type=int, default=1, help="average the network over this many flips/rotations")
    ap.add_argument("--out", help="write the rows as JSON")
    ap.add_argument("--table", nargs="+", metavar="JSON", help="only print the tables of these runs")
    args = ap.parse_args()
    if args.table:
        runs = {}
        for p in args.table:  # runs with the same label are merged (e.g. a later --sstem run)
            data = json.loads(Path(p).read_text())
            for run in data if isinstance(data, list) else [data]:  # a file may hold a list of runs
                runs.setdefault(run["label"], {"label": run["label"], "rows": []})["rows"] += run["rows"]
        print(table(list(runs.values())))
        return
    imgs = images(args.n_held, args.n_own, args.sstem, not args.no_real, args.n_tune)
    factors = tuple(int(s) for s in args.factors.split(","))
    rows = rows_for(args.model, imgs, factors, threads=args.threads, ensemble=args.ensemble)
    run = {"label": args.label, "model": args.model, "ensemble": args.ensemble, "command": " ".join(["python", *sys.argv]), "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(run, indent=1) + "\n")
    print(table([run]))


if __name__ == "__main__":
    main()

"""An extra Gaussian smoothing of the default supersample output, per grid pitch (issue 18, session 15).

Scores the default mode (network, self-check blend against bilinear, the paper's blur; as
``benchmarks/dlss_finetune.py``'s ``net-sg-blur``) followed by ``gaussian_filter(., sigma)`` for
each sigma in SIGMAS, RMSE against the blurred full scan, and plain bilinear, at pitches 4-10.

    EMCS_SHARED_DATA=/work/shared/data python benchmarks/dlss_extra_blur.py tune OUT.json   # tuning scans
    EMCS_SHARED_DATA=/work/shared/data python benchmarks/dlss_extra_blur.py held OUT.json   # real, held, own, sstem
    python benchmarks/dlss_extra_blur.py table OUT.json real,held,own,sstem
"""
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
SIGMAS = (0.0, 0.5, 0.75, 1.0, 1.5, 2.0)
FACTORS = (4, 6, 8, 10)


def default_and_bilinear(img: np.ndarray, s: int, model, dev) -> tuple[np.ndarray, np.ndarray]:
    """The default supersample output of ``img`` sampled at pitch ``s`` (network with the measured
    samples pasted back, self-check blend against blurred bilinear, the paper's blur) and plain
    bilinear."""
    from emcs.dlss.interp import upsample
    from emcs.dlss.safeguard import blend
    from emcs.dlss.sampling import grid_offset, subsample
    from emcs.dlss.smoothing import paper_blur
    from emcs.dlss.supersample import check_net, net_estimate

    sp = subsample(img, s)
    net = net_estimate(sp, s, img.shape, model, dev)
    net[grid_offset(img.shape[0], s)::s, grid_offset(img.shape[1], s)::s] = sp
    bil = upsample(sp, s, img.shape, "bilinear")
    return paper_blur(blend(net, bil, check_net(sp, s, img.shape, model, dev))), bil


def score(which: str, out: str) -> None:
    import dlss_finetune
    import torch
    from bench_dlss import blur
    from scipy import ndimage

    from emcs.dlss.supersample import load_default_model

    torch.set_num_threads(2)
    dev = torch.device("cpu")
    model, _ = load_default_model(None, dev)
    imgs = dlss_finetune.images(0, 0, False, False, 8) if which == "tune" else dlss_finetune.images(8, 8, True)
    rows = []
    for name, img in imgs:
        ref = blur(img)
        for s in FACTORS:
            t0 = time.time()
            default, bil = default_and_bilinear(img, s, model, dev)
            rows.append({"image": name, "factor": s, "method": "bilinear", "rmse": float(np.sqrt(np.mean((bil - ref) ** 2)))})
            for sg in SIGMAS:
                o = ndimage.gaussian_filter(default, sg, mode="reflect") if sg else default
                rows.append({"image": name, "factor": s, "method": f"x{sg}", "rmse": float(np.sqrt(np.mean((o - ref) ** 2)))})
            print(name, s, f"{time.time() - t0:.1f} s", file=sys.stderr, flush=True)
    Path(out).write_text(json.dumps(rows) + "\n")


def table(path: str, groups: str) -> None:
    rows = json.loads(Path(path).read_text())
    for g in groups.split(","):
        print(f"\n**{g}** (mean RMSE / mean bilinear RMSE, blurred target; cases worse than plain bilinear)\n")
        print("| extra sigma | " + " | ".join(f"1/{s * s}" for s in FACTORS) + " | worse |")
        print("|---" * (len(FACTORS) + 2) + "|")
        for sg in SIGMAS:
            m, cells, worse = f"x{sg}", [], 0
            for s in FACTORS:
                sel = [r for r in rows if r["image"].startswith(g + ":") and r["factor"] == s]
                by = {(r["image"], r["method"]): r["rmse"] for r in sel}
                names = sorted({r["image"] for r in sel})
                cells.append(f"{np.mean([by[n, m] for n in names]) / np.mean([by[n, 'bilinear'] for n in names]):.3f}")
                worse += sum(by[n, m] > by[n, "bilinear"] for n in names)
            print(f"| {sg} | " + " | ".join(cells) + f" | {worse} |")


if __name__ == "__main__":
    if sys.argv[1] == "table":
        table(sys.argv[2], sys.argv[3])
    else:
        score(sys.argv[1], sys.argv[2])

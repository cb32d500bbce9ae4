"""Held-out PSNR of tcs-unfold decodes at several precisions (issue 17: int8 on the CPU).

    python benchmarks/bench_tcs_int8_quality.py SIZE float32,int8 [KIND,KIND... [SEED]]

Movies (B = 10 frames, density-0.5 generated masks): simulated kinds from
``emcs.simulate`` (bench_tcs_nets.simulate, data seeds 977000 + k, never used in
training) and ``real:stem``, ``real:atomseg``, ``real:sstem``, animated from the
real images in ../shared/data (bench_tcs_heldout.real_movie; SIZE <= 460 for those).
SEED (default 977000, the held-out movies) replaces the data seed base: session 19 chose
the last stage's arithmetic on the simulated kinds with SEED 5300000, a tuning set. One JSON
line per movie: PSNR against the clean truth and CPU seconds per precision, the PSNR change
against the first precision, and the largest difference from the first precision's output
relative to its range. One thread.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_tcs_heldout  # noqa: E402
from bench_tcs_nets import HELDOUT_SEED, simulate  # noqa: E402

#: (kind, mean counts per pixel) of movie k (data seed HELDOUT_SEED + 77000 + k)
MOVIES = (("cells", 50), ("hrtem-particle", 5), ("haadf-crystal", 20), ("fibres", 15), ("lattice", 30),
          ("real:stem", 15), ("real:atomseg", 30), ("real:sstem", 50))
B = 10


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def movie(k: int, size: int, seed_base: int = HELDOUT_SEED + 77_000):
    """Clean frames, measurement (scaled as emcs decode scales it) and operator of movie k."""
    from emcs.simulate.detector import apply_dose
    from emcs.tcs.operator import TcsOperator

    kind, dose = MOVIES[k]
    seed = seed_base + k
    if kind.startswith("real:"):
        rng = np.random.default_rng(seed)
        clean = bench_tcs_heldout.real_movie(kind[5:], k, size, rng)[0][:B]
        counts = apply_dose(clean, dose, rng=rng)
        scale = float(clean.mean()) / dose
    else:
        clean, counts, scale = simulate(kind, B, size, dose, seed)
    op = TcsOperator.generated(seed, B, (size, size), 0.5)
    return clean, op.encode(counts).astype(np.float32)[None] * scale, op


def main(size: int, precisions: list[str], kinds: list[str] | None, seed_base: int = HELDOUT_SEED + 77_000) -> None:
    import torch

    from emcs.compare.metrics import score_stack
    from emcs.tcs.nets.api import decode_measurements, list_models

    torch.set_num_threads(1)
    info = next(i for i in list_models() if i.name == "tcs-unfold")
    for k, (kind, dose) in enumerate(MOVIES):
        if kinds and kind not in kinds:
            continue
        clean, y, op = movie(k, size, seed_base)
        psnr, cpu, outs = {}, {}, {}
        for p in precisions:
            c0 = cpu_seconds()
            outs[p] = decode_measurements(y, op, info, device="cpu", precision=p)[0]
            cpu[p] = round(cpu_seconds() - c0, 1)
            psnr[p] = round(float(score_stack(outs[p], clean)["psnr_mean"]), 4)
        ref = outs[precisions[0]]
        span = float(ref.max() - ref.min())
        print(json.dumps({
            "kind": kind, "dose": dose, "size": size, "psnr": psnr, "cpu_s": cpu,
            "dpsnr": {p: round(psnr[p] - psnr[precisions[0]], 4) for p in precisions[1:]},
            "maxdiff_rel": {p: round(float(np.abs(outs[p] - ref).max()) / span, 5) for p in precisions[1:]},
        }), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3].split(",") if len(sys.argv) > 3 else None,
         *[int(a) for a in sys.argv[4:5]])

"""Choose between candidate TCS networks on the tuning set, never on the held-out table.

The default decode (``emcs decode``: auto model choice, drift blend, CPU) of the tuning movies of
``tune_static_blend.py`` (23 movies from sources the held-out table does not use, seeds
18 000 000+), first B frames, plain containers (Q = 0), 128 x 128; PSNR against the clean
frames. The networks are whatever ``emcs decode`` finds: put a candidate in a folder and set
``EMCS_MODELS`` to it (it then sits beside, or replaces by name, the shipped models)::

    python benchmarks/tune_tcs_models.py shipped.json
    EMCS_MODELS=/path/to/candidate python benchmarks/tune_tcs_models.py candidate.json --B 20,30
    python benchmarks/tune_tcs_models.py --compare shipped.json candidate.json

Session 16 (``tcs_heldout.md``) chose the 8-stage ``tcs-unfold-deep`` over a 5-stage run of the
same recipe with it.
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
import tune_static_blend as tsb  # noqa: E402
from bench_tcs_heldout import auto_choice, decode_file  # noqa: E402


def score(out: Path, Bs: tuple[int, ...], cache: Path) -> None:
    import torch

    from emcs.compare.metrics import score_stack

    torch.set_num_threads(1)
    cache.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for i in range(len(tsb.TUNING)):
            movie = tsb.tuning_movie(i, 128, cache)
            for B in Bs:
                container = tsb.encode_case(i, B, 0, movie, work)
                t = time.perf_counter()
                x = decode_file(container, method="auto")
                row = {"i": i, "B": B, "source": tsb.TUNING[i][0], "dose": tsb.TUNING[i][2],
                       "auto": auto_choice(container),
                       "psnr": score_stack(x * float(movie["scale"]), movie["clean"][:B])["psnr_mean"],
                       "seconds": round(time.perf_counter() - t, 2)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    out.write_text(json.dumps(rows, indent=1))
    print(f"mean {np.mean([r['psnr'] for r in rows]):.3f} dB over {len(rows)} cases")


def compare(paths: list[Path]) -> None:
    runs = [json.loads(p.read_text()) for p in paths]
    base = np.array([r["psnr"] for r in runs[0]])
    for p, run in zip(paths, runs, strict=True):
        v = np.array([r["psnr"] for r in run])
        d = v - base
        by_b = ", ".join(f"B {b}: {np.mean([r['psnr'] for r in run if r['B'] == b]):.3f}"
                         for b in sorted({r["B"] for r in run}))
        print(f"{p.name}: mean {v.mean():.3f} dB ({by_b}); vs {paths[0].name} {d.mean():+.3f} "
              f"({d.min():+.2f}..{d.max():+.2f}, {int((d < 0).sum())} cases lower)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("json", type=Path, nargs="+", help="result file (with --compare: several, the first the base)")
    p.add_argument("--B", default="20,30", help="frames per measurement, comma-separated")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "tcs_tune_movies")
    p.add_argument("--compare", action="store_true")
    args = p.parse_args()
    if args.compare:
        compare(args.json)
    else:
        score(args.json[0], tuple(int(b) for b in args.B.split(",")), args.cache)


if __name__ == "__main__":
    main()

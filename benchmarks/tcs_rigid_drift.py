"""Default decode (network + drift blend) of small rigidly drifting scenes, for comparing networks.

The movies of ``tests/test_tcs_static.py`` (``_movie``: smooth blobs, 64 x 64, 15 counts/px,
shifted along the diagonal by ``drift`` px/frame), B = 20 and 30, drifts 0.1 / 0.2 / 0.3 / 0.5,
seeds 3-6; PSNR of ``emcs decode`` (default settings) against the clean frames. Networks: what
``emcs decode`` finds (``EMCS_MODELS=folder`` adds a candidate)::

    python benchmarks/tcs_rigid_drift.py shipped.json
    EMCS_MODELS=benchmarks/candidates python benchmarks/tcs_rigid_drift.py deep.json
    python benchmarks/tcs_rigid_drift.py --compare shipped.json deep.json

    python benchmarks/tcs_rigid_drift.py --true-path oracle.json   # the drift blend given the true path

Session 16 found with it that the (unshipped) ``tcs-unfold-deep`` loses to tcs-unfold here
(``tcs_heldout.md``), although it passed the held-out rule, and, with ``--true-path`` (a
diagnostic: the drift path :func:`emcs.tcs.drift.frame_path` would find replaced by the true
one), that the path found from the network's frames is 0.2-0.7 of the true motion.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_tcs_static import _decode, _movie, _psnr  # noqa: E402

BS = (20, 30)
DRIFTS = (0.1, 0.2, 0.3, 0.5)
SEEDS = (3, 4, 5, 6)


def run(out: Path, true_path: bool = False) -> None:
    import emcs.tcs.drift as blend

    found = blend.frame_path
    now: dict = {}

    def path(x, g, settings=blend.DEFAULT_DRIFT):
        """The path found, its ratio to the true one recorded; with true_path the true path."""
        d = found(x, g, settings)
        t = np.arange(x.shape[0]) - (x.shape[0] - 1) / 2
        v = now["drift"] / np.sqrt(2)  # _movie shifts along the diagonal
        true = np.stack([t * v, t * v], axis=1)
        now["ratio"] = float((d * true).sum() / (true * true).sum())
        return true if true_path else d

    blend.frame_path = path
    rows = []
    for B in BS:
        for drift in DRIFTS:
            for seed in SEEDS:
                now.clear()
                now["drift"] = drift
                clean, counts = _movie(drift, B, seed=seed)
                with tempfile.TemporaryDirectory() as tmp:
                    x, summary = _decode(Path(tmp), counts, B, "on")
                rows.append({"B": B, "drift": drift, "seed": seed, "psnr": _psnr(x, clean),
                             "path_found_over_true": now.get("ratio")})
                print(json.dumps(rows[-1]), flush=True)
    out.write_text(json.dumps(rows, indent=1))


def compare(a: Path, b: Path) -> None:
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    d = np.array([y["psnr"] - x["psnr"] for x, y in zip(ra, rb, strict=True)])
    for B in BS:
        for drift in DRIFTS:
            sel = [i for i, x in enumerate(ra) if x["B"] == B and x["drift"] == drift]
            print(f"B = {B}, drift {drift}: " + " ".join(f"{d[i]:+.2f}" for i in sel))
    print(f"{b.name} - {a.name}: mean {d.mean():+.2f} dB, {int((d < 0).sum())} of {d.size} lower, "
          f"min {d.min():+.2f}, max {d.max():+.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("json", type=Path, nargs="+")
    p.add_argument("--compare", action="store_true")
    p.add_argument("--true-path", action="store_true", help="diagnostic: the drift blend given the true path")
    args = p.parse_args()
    if args.compare:
        compare(*args.json[:2])
    else:
        run(args.json[0], args.true_path)


if __name__ == "__main__":
    main()

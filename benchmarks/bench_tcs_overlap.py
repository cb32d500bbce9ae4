"""Tile overlap of the tcs-unfold decode: seam error and held-out PSNR against the overlap (issue 17).

    python benchmarks/bench_tcs_overlap.py heldout SIZE TILE OVERLAPS PRECISIONS
    python benchmarks/bench_tcs_overlap.py source STACK.tif SIZE TILE OVERLAPS PRECISIONS
    python benchmarks/bench_tcs_overlap.py speed STACK.tif SIZE OVERLAPS REPEATS

``heldout``: the held-out movies of ``bench_tcs_int8_quality.py`` (B = 10, density-0.5
generated masks; simulated kinds with data seeds never used in training and three movies
animated from the real images in ../shared/data), SIZE^2, decoded whole (one tile) and in
tiles of TILE px with each overlap; PSNR against the clean truth, its change against the
first overlap, and the largest and r.m.s. difference from the whole-frame decode (relative
to its range). A small TILE puts many seams in a small frame (a harsher test than the
362-512 px tiles ``emcs decode`` uses). ``source``: the first 10 frames of a SIZE^2 crop of
STACK encoded (B = 10, seed 1) and decoded the same way (no truth: differences only).
One JSON line per movie and precision; one thread. ``speed``: the same crop decoded as
``emcs decode`` decodes it (the device it picks; on the CPU two torch threads: side-by-side
tiles, default precision), the overlaps alternated REPEATS times; one JSON line per decode
(wall and CPU seconds, tiles).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tcs_int8_quality import MOVIES, cpu_seconds, movie  # noqa: E402


def shipped():
    from emcs.tcs.nets.api import list_models

    return next(i for i in list_models() if i.name == "tcs-unfold")


def source_movie(path: str, size: int):
    import tifffile

    from emcs.tcs.operator import TcsOperator

    frames = np.asarray(tifffile.memmap(path)[:10, :size, :size], np.float32)
    op = TcsOperator.generated(1, 10, (size, size), 0.5)
    return None, op.encode(frames)[None].astype(np.float32), op


def compare(clean, y, op, info, tile: int, overlaps: list[int], precision: str, label: str) -> dict:
    from emcs.compare.metrics import score_stack
    from emcs.tcs.nets.api import decode_measurements

    t0 = cpu_seconds()
    whole = decode_measurements(y, op, info, "cpu", tile=4096, precision=precision)[0]
    row = {"movie": label, "precision": precision, "whole_cpu_s": round(cpu_seconds() - t0, 2)}
    span = float(whole.max() - whole.min())
    if clean is not None:
        row["whole_psnr"] = round(float(score_stack(whole, clean)["psnr_mean"]), 4)
    first = None  # PSNR at the first overlap
    for ov in overlaps:
        t0 = cpu_seconds()
        out = decode_measurements(y, op, info, "cpu", tile=tile, overlap=ov, precision=precision)[0]
        d = out - whole
        r = {"cpu_s": round(cpu_seconds() - t0, 2), "max_rel": float(np.abs(d).max() / span),
             "rms_rel": float(np.sqrt(np.mean(d * d)) / span)}
        if clean is not None:
            r["psnr"] = round(float(score_stack(out, clean)["psnr_mean"]), 4)
            first = r["psnr"] if first is None else first
            r["dpsnr"] = round(r["psnr"] - first, 4)
        row[f"ov{ov}"] = r
    return row


def speed(path: str, size: int, overlaps: list[int], repeats: int) -> None:
    import time

    import torch

    from emcs.nn.tiling import fitted_tile
    from emcs.tcs.nets.api import TILE, decode_measurements

    torch.set_num_threads(2)
    info = shipped()
    _, y, op = source_movie(path, size)
    for k in range(repeats):
        for ov in overlaps:
            tile = fitted_tile(size, max(int(TILE / 2**0.5), 2 * ov), ov)
            t0, c0 = time.time(), cpu_seconds()
            # device None: chosen as emcs decode chooses it (pick_device), with its malloc setup
            decode_measurements(y, op, info, overlap=ov)
            print(json.dumps({"size": size, "overlap": ov, "repeat": k, "tile": tile,
                              "wall_s": round(time.time() - t0, 2), "cpu_s": round(cpu_seconds() - c0, 2)}),
                  flush=True)


def main() -> None:
    import torch

    args = sys.argv[1:]
    mode = args.pop(0)
    if mode == "speed":
        speed(args[0], int(args[1]), [int(v) for v in args[2].split(",")], int(args[3]))
        return
    torch.set_num_threads(1)
    path = args.pop(0) if mode == "source" else None
    size, tile = int(args[0]), int(args[1])
    overlaps = [int(v) for v in args[2].split(",")]
    precisions = args[3].split(",")
    info = shipped()
    items = ([(path, lambda: source_movie(path, size))] if mode == "source"
             else [(MOVIES[k][0], lambda k=k: movie(k, size)) for k in range(len(MOVIES))])
    for label, make in items:
        clean, y, op = make()
        for precision in precisions:
            print(json.dumps(compare(clean, y, op, info, tile, overlaps, precision, label)), flush=True)


if __name__ == "__main__":
    main()

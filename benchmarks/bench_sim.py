"""Benchmark of emcs.sim: wide-field vs Wiener SIM vs the VDL-SIM network, and speed.

Held-out simulated data (seeds never used in training), several photon levels:
PSNR/SSIM against the ideal-SIM reference (truth band-limited to f_c + |k|,
emcs.sim.reference; scored by emcs.compare.metrics.affine_fidelity: affine
intensity fit, interior, SSIM with the one emcs setting) and decorrelation
resolution for

- wide-field: one uniform-illumination exposure (bilinear 2x for PSNR/SSIM,
  decorrelation on its native 80 nm grid);
- Wiener: classical reconstruction of the raw 3x3 stack, parameters estimated
  from the data (w = 0.08), and the same after rolling-ball (radius 5);
- net (WF): the network on the single wide-field exposure (1 exposure per SR frame);
- net (sum): the network on the sum of the 9 raw frames (same light as Wiener).

Speed: SR frames/s at 512x512 for each network width (and Wiener), CPU.

Usage::

    python benchmarks/bench_sim.py --weights emcs/models/vdlsim-16.safetensors emcs/models/vdlsim-32.safetensors \
        --json benchmarks/sim_results.json
    python benchmarks/bench_sim.py --speed-only --widths 16 32 64 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def quality(weights: list[str], levels: list[float], seeds: list[int], size: int,
            cache: str | None = None) -> dict:
    import torch

    from emcs.compare.metrics import affine_fidelity as fidelity
    from emcs.sim.background import remove_background
    from emcs.sim.decorrelation import decorrelation_resolution
    from emcs.sim.otf import Optics
    from emcs.sim.recon import load_network, net_frame
    from emcs.sim.reference import bilinear_up, sim_reference
    from emcs.sim.wiener import WienerSettings, reconstruct
    from emcs.simulate import fluorescence as sm

    optics = Optics()
    nets = {w: load_network(w)[0] for w in weights}
    structures = ["filaments", "tubules", "mesh", "vesicles", "mixed"]
    rows = []
    import os

    cached = {}
    if cache and os.path.exists(cache):
        with open(cache) as f:
            cached = {(r["counts"], r["seed"], r["size"]): r for r in json.load(f)}
    for counts in levels:
        for seed in seeds:
            structure = structures[seed % len(structures)]
            res = sm.simulate_movie(1, (size, size), seed=seed, counts=counts, structure=structure)
            ref = sim_reference(res.truth[0], optics)
            key = (counts, seed, size)
            if key in cached:  # classical results (wide-field, Wiener) computed earlier
                out = dict(cached[key])
                _nets(out, nets, res, ref, net_frame, fidelity, decorrelation_resolution, torch)
                rows.append(out)
                continue
            out = {"counts": counts, "snr": res.info["snr"], "seed": seed, "structure": structure,
                   "size": size}
            wf = res.widefield[0].astype(np.float32)
            out["widefield"] = dict(fidelity(bilinear_up(wf), ref),
                                    res_nm=decorrelation_resolution(wf, optics.pixel_nm)["resolution_nm"])
            raw = res.raw.reshape(3, 3, size, size).astype(np.float64)
            t = time.time()
            sr, est, _ = reconstruct(raw, optics, settings=WienerSettings(wiener=0.08))
            kerr = max(min(np.hypot(e.ky - p.ky, e.kx - p.kx), np.hypot(e.ky + p.ky, e.kx + p.kx))
                       for e, p in zip(est, res.patterns, strict=False))
            out["wiener"] = dict(fidelity(sr, ref), res_nm=decorrelation_resolution(sr, 40.0)["resolution_nm"],
                                 k_error=float(kerr), seconds=time.time() - t)
            srb = remove_background(sr, 5)
            out["wiener_rb"] = dict(fidelity(srb, ref), res_nm=decorrelation_resolution(srb, 40.0)["resolution_nm"])
            _nets(out, nets, res, ref, net_frame, fidelity, decorrelation_resolution, torch)
            rows.append(out)
            print(json.dumps({k: (v if not isinstance(v, dict) else {a: round(b, 3) for a, b in v.items()})
                              for k, v in out.items()}), flush=True)
    if cache:
        keep = ("counts", "snr", "seed", "structure", "size", "widefield", "wiener", "wiener_rb")
        merged = dict(cached)
        merged.update({(r["counts"], r["seed"], r["size"]): {k: r[k] for k in keep} for r in rows})
        with open(cache, "w") as f:
            json.dump(list(merged.values()), f)
    return {"rows": rows}


def _nets(out, nets, res, ref, net_frame, fidelity, decorrelation_resolution, torch) -> None:
    wf = res.widefield[0].astype(np.float32)
    wsum = res.raw.astype(np.float32).sum(axis=0)
    for w, net in nets.items():
        with torch.no_grad():
            y1 = net_frame(net, wf)
            y9 = net_frame(net, wsum)
        out[f"net:{w}"] = dict(fidelity(y1, ref), res_nm=decorrelation_resolution(y1, 40.0)["resolution_nm"])
        out[f"netsum:{w}"] = dict(fidelity(y9, ref), res_nm=decorrelation_resolution(y9, 40.0)["resolution_nm"])


def summarise(rows: list[dict]) -> list[dict]:
    methods = [k for k in rows[0] if isinstance(rows[0][k], dict)]
    table = []
    for counts in sorted({r["counts"] for r in rows}):
        sel = [r for r in rows if r["counts"] == counts]
        entry = {"counts": counts, "snr": round(sel[0]["snr"], 1), "n": len(sel)}
        for m in methods:
            res = np.array([r[m]["res_nm"] for r in sel])
            fin = res[np.isfinite(res)]
            entry[m] = {"psnr": round(float(np.mean([r[m]["psnr"] for r in sel])), 2),
                        "ssim": round(float(np.mean([r[m]["ssim"] for r in sel])), 3),
                        "res_nm_median": round(float(np.median(fin)), 1) if fin.size else None,
                        "res_found": f"{fin.size}/{res.size}"}
        table.append(entry)
    return table


def speed(widths: list[int], threads: int, size: int = 512, repeats: int = 3, weights: dict | None = None) -> dict:
    import torch

    from emcs.sim.net import build
    from emcs.sim.otf import Optics
    from emcs.sim.recon import load_network, net_frame
    from emcs.sim.wiener import reconstruct

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    frame = rng.random((size, size)).astype(np.float32) * 100
    out = {"threads": threads, "size": size}
    for c in widths:
        w = (weights or {}).get(c)
        net = load_network(w)[0] if w else build(c, 4).eval()
        net_frame(net, frame, tile=size)  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            net_frame(net, frame, tile=size)
            times.append(time.perf_counter() - t)
        out[f"net{c}"] = {"seconds_per_frame": round(float(np.median(times)), 3),
                          "frames_per_s": round(1.0 / float(np.median(times)), 3),
                          "parameters": int(sum(p.numel() for p in net.parameters())),
                          "trained": bool(w)}
        print(json.dumps({c: out[f"net{c}"]}), flush=True)
    from emcs.simulate import fluorescence as sm

    res = sm.simulate_movie(1, (size, size), seed=1, counts=500)
    raw = res.raw.reshape(3, 3, size, size).astype(np.float64)
    t = time.perf_counter()
    reconstruct(raw, Optics())
    out["wiener"] = {"seconds_per_frame": round(time.perf_counter() - t, 3)}
    out["wiener"]["frames_per_s"] = round(1.0 / out["wiener"]["seconds_per_frame"], 3)
    print(json.dumps({"wiener": out["wiener"]}), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", nargs="*", default=["emcs/models/vdlsim-32.safetensors"])
    ap.add_argument("--levels", nargs="*", type=float, default=[10, 30, 80, 300, 2000])
    ap.add_argument("--seeds", nargs="*", type=int, default=list(range(9000, 9010)))
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--widths", nargs="*", type=int, default=[16, 32, 64])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--speed-only", action="store_true")
    ap.add_argument("--update-cards", action="store_true", help="write held-out metrics into the model cards")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--cache", default=None, help="JSON cache of the wide-field/Wiener results")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    result = {"machine": "2-core CPU, no GPU (shared with other jobs)"}
    if not args.speed_only:
        q = quality(args.weights, args.levels, args.seeds, args.size, args.cache)
        result["quality"] = summarise(q["rows"])
        result["rows"] = q["rows"]
        print(json.dumps(result["quality"], indent=1))
    if not args.no_speed:
        wmap = {}
        for w in args.weights:
            from emcs.nn.weights import read_card

            wmap[int(read_card(w)["config"]["channels"])] = w
        result["speed"] = speed(args.widths, args.threads, weights=wmap)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.update_cards and "quality" in result:
        update_cards(args.weights, result["quality"], " ".join(["python", "benchmarks/bench_sim.py"] + __import__("sys").argv[1:]))


def update_cards(weights: list[str], table: list[dict], command: str) -> None:
    """Write the held-out metrics of each network into its model card."""
    from emcs.nn.weights import card_path

    for w in weights:
        path = card_path(w)
        card = json.loads(path.read_text())
        card["held_out"] = {
            "data": "emcs.sim.simulate.simulate_movie, seeds 9000-9007 (never used in training), 128x128 "
                    "camera px, structures filaments/tubules/mesh/vesicles/mixed",
            "reference": "truth band-limited to f_c + |k| (emcs.sim.reference.sim_reference); affine intensity fit",
            "command": command,
            "machine": "2-core CPU, no GPU",
            "levels": [{"counts": e["counts"], "snr": e["snr"],
                        "net_widefield": e[f"net:{w}"], "net_raw_sum": e[f"netsum:{w}"],
                        "bilinear_widefield": e["widefield"], "wiener": e["wiener"]} for e in table],
        }
        path.write_text(json.dumps(card, indent=2) + "\n")


if __name__ == "__main__":
    main()

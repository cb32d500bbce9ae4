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


def method_stats(sel: list[dict], m: str) -> dict:
    """Mean PSNR/SSIM and median decorrelation resolution of method ``m`` over rows ``sel``."""
    res = np.array([r[m]["res_nm"] for r in sel])
    fin = res[np.isfinite(res)]
    return {"psnr": round(float(np.mean([r[m]["psnr"] for r in sel])), 2),
            "ssim": round(float(np.mean([r[m]["ssim"] for r in sel])), 3),
            "res_nm_median": round(float(np.median(fin)), 1) if fin.size else None,
            "res_found": f"{fin.size}/{res.size}"}


def summarise(rows: list[dict]) -> list[dict]:
    methods = [k for k in rows[0] if isinstance(rows[0][k], dict)]
    table = []
    for counts in sorted({r["counts"] for r in rows}):
        sel = [r for r in rows if r["counts"] == counts]
        entry = {"counts": counts, "snr": round(sel[0]["snr"], 1), "n": len(sel)}
        entry.update({m: method_stats(sel, m) for m in methods})
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


# ----------------------------------------------------------------------------- raw-input network
#: SNR levels of the raw-input suite and the out-of-focus haze (mean, as a fraction of S)
RAW_SNRS = (2.0, 5.0, 15.0, 50.0)
RAW_HAZE = 0.5
#: SR pixels cut at each edge before scoring (Wiener's edge taper reaches ~20)
RAW_BORDER = 24


def photons_for_snr(value: float, background: float = 10.0, read_noise: float = 1.5) -> float:
    """The photon level S with S / sqrt(S + B + sigma^2) = value (emcs.sim.forward.snr)."""
    v2 = value * value
    return float(0.5 * (v2 + np.sqrt(v2 * v2 + 4 * v2 * (background + read_noise**2))))


def _wrap(angle: float, period: float) -> float:
    return float((angle + period / 2) % period - period / 2)


def pattern_errors(est, true) -> list[dict]:
    """Estimated vs true orientation (deg), period (nm) and phase (rad) of every angle.

    A wave vector and its negative describe the same pattern (with the phase negated);
    the estimate is compared with whichever sign of the truth is closer.
    """
    out = []
    for e, p in zip(est, true, strict=False):
        sign = 1 if np.hypot(e.ky - p.ky, e.kx - p.kx) <= np.hypot(e.ky + p.ky, e.kx + p.kx) else -1
        out.append({"angle_deg": [round(e.angle_deg % 180, 2), round(p.angle_deg % 180, 2)],
                    "period_nm": [round(1e3 / e.k, 2), round(1e3 / p.k, 2)],
                    "phase_rad": [round(_wrap(e.phase, 2 * np.pi), 3), round(_wrap(sign * p.phase, 2 * np.pi), 3)],
                    "phase_error_rad": round(abs(_wrap(e.phase - sign * p.phase, 2 * np.pi)), 3),
                    "angle_error_deg": round(abs(_wrap(e.angle_deg - p.angle_deg, 180.0)), 3),
                    "period_error_nm": round(abs(1e3 / e.k - 1e3 / p.k), 3),
                    "modulation": [round(e.modulation, 3), round(p.modulation, 3)]})
    return out


def raw_suite(wf_weights: str, raw_weights: str | None, structure: str, seeds: list[int], size: int,
              cache: str | None = None) -> list[dict]:
    """Wide-field 2x, Wiener, the wide-field network and the raw-input network on raw stacks
    with out-of-focus haze, scored against the object (affine intensity fit)."""
    import os

    import torch

    from emcs.compare.metrics import affine_fidelity
    from emcs.sim.decorrelation import decorrelation_resolution
    from emcs.sim.otf import Optics
    from emcs.sim.recon import load_network, net_frame, raw_net_frame
    from emcs.sim.reference import bilinear_up
    from emcs.sim.wiener import WienerSettings, reconstruct
    from emcs.simulate import fluorescence as sm

    optics = Optics()
    cached = {}
    if cache and os.path.exists(cache):
        with open(cache) as f:
            cached = {(r["snr"], r["seed"], r["structure"], r["size"]): r for r in json.load(f)}
    wf_net = load_network(wf_weights)[0]
    raw_net = load_network(raw_weights)[0] if raw_weights else None

    def score(img, truth, px):
        return dict(affine_fidelity(img, truth, border=RAW_BORDER),
                    res_nm=decorrelation_resolution(img, px)["resolution_nm"])

    rows = []
    for level in RAW_SNRS:
        for seed in seeds:
            res = sm.simulate_movie(1, (size, size), seed=seed, counts=photons_for_snr(level),
                                    structure=structure, out_of_focus=RAW_HAZE)
            truth = res.truth[0]
            raw = res.raw.reshape(3, 3, size, size).astype(np.float64)
            key = (level, seed, structure, size)
            out = dict(cached.get(key) or {"snr": level, "seed": seed, "structure": structure, "size": size,
                                           "counts": photons_for_snr(level)})
            if "wiener" not in out:
                wsum = raw.sum(axis=(0, 1)).astype(np.float32)
                out["widefield"] = dict(affine_fidelity(bilinear_up(wsum), truth, border=RAW_BORDER),
                                        res_nm=decorrelation_resolution(wsum, optics.pixel_nm)["resolution_nm"])
                sr, est, _ = reconstruct(raw, optics, settings=WienerSettings(wiener=0.08))
                out["wiener"] = score(sr, truth, 40.0)
                out["estimation"] = pattern_errors(est, res.patterns)
                with torch.no_grad():
                    out["net_widefield"] = score(net_frame(wf_net, wsum), truth, 40.0)
            if raw_net is not None:
                with torch.no_grad():
                    out["net_raw"] = score(raw_net_frame(raw_net, raw, optics)[0], truth, 40.0)
            rows.append(out)
            print(json.dumps({k: v for k, v in out.items() if k != "estimation"}), flush=True)
    if cache:
        keep = ("snr", "seed", "structure", "size", "counts", "widefield", "wiener", "estimation", "net_widefield")
        cached.update({(r["snr"], r["seed"], r["structure"], r["size"]): {k: r[k] for k in keep} for r in rows})
        with open(cache, "w") as f:
            json.dump(list(cached.values()), f)
    return rows


def summarise_raw(rows: list[dict]) -> list[dict]:
    """Mean PSNR/SSIM, median decorrelation and estimation errors per SNR level."""
    methods = [m for m in ("widefield", "wiener", "net_widefield", "net_raw") if m in rows[0]]
    table = []
    for level in sorted({r["snr"] for r in rows}):
        sel = [r for r in rows if r["snr"] == level]
        entry = {"snr": level, "counts": round(sel[0]["counts"], 1), "n": len(sel)}
        entry.update({m: method_stats(sel, m) for m in methods})
        est = [a for r in sel for a in r["estimation"]]
        entry["estimation"] = {f"{q}_error_{stat}": round(float(f([a[f"{q}_error_{u}"] for a in est])), 3)
                               for q, u in (("angle", "deg"), ("period", "nm"), ("phase", "rad"))
                               for stat, f in (("median", np.median), ("max", np.max))}
        table.append(entry)
    return table


def raw_speed(wf_weights: str, raw_weights: str | None, threads: int, size: int = 512) -> dict:
    """SR frames/s at size^2 on the CPU: Wiener, the wide-field network (on the raw sum) and
    the raw-input network (front-end with parameter estimation + network)."""
    import torch

    from emcs.sim.otf import Optics
    from emcs.sim.recon import load_network, net_frame, raw_net_frame
    from emcs.sim.wiener import reconstruct
    from emcs.simulate import fluorescence as sm

    torch.set_num_threads(threads)
    res = sm.simulate_movie(1, (size, size), seed=1, counts=photons_for_snr(15.0), out_of_focus=RAW_HAZE)
    raw = res.raw.reshape(3, 3, size, size).astype(np.float64)
    wsum = raw.sum(axis=(0, 1)).astype(np.float32)
    wf_model = load_network(wf_weights)[0]
    runs = {"wiener": lambda: reconstruct(raw, Optics()),
            "net_widefield": lambda: net_frame(wf_model, wsum, tile=size)}
    if raw_weights:
        model = load_network(raw_weights)[0]
        runs["net_raw"] = lambda: raw_net_frame(model, raw, Optics(), tile=size)
    out = {"threads": threads, "size": size}
    for name, fn in runs.items():
        fn()  # warm-up
        t = time.perf_counter()
        fn()
        sec = time.perf_counter() - t
        out[name] = {"seconds_per_frame": round(sec, 3), "frames_per_s": round(1.0 / sec, 3)}
        print(json.dumps({name: out[name]}), flush=True)
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
    ap.add_argument("--raw-suite", action="store_true",
                    help="raw-input suite: SNR 2/5/15/50 with out-of-focus haze, scored against the object")
    ap.add_argument("--raw-weights", default=None, help="raw-input network (vdlsim-raw) for --raw-suite")
    ap.add_argument("--structure", default="mesh", help="--raw-suite: structure family (held out of training)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    result = {"machine": "2-core CPU, no GPU (shared with other jobs)"}
    if args.raw_suite:
        main_raw(args, result)
        return
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


#: names of the suite's methods in the model card
CARD_KEYS = {"widefield": "widefield_2x_raw_sum", "net_widefield": "vdlsim32_on_raw_sum", "net_raw": "this_network"}


def main_raw(args, result: dict) -> None:
    """``--raw-suite``: quality table (and speed unless --no-speed), optionally into the raw card."""
    wf = args.weights[0]
    rows = raw_suite(wf, args.raw_weights, args.structure, args.seeds, args.size, args.cache)
    result.update(suite={"structure": args.structure, "out_of_focus": RAW_HAZE, "size": args.size,
                         "seeds": args.seeds, "border": RAW_BORDER, "widefield_weights": wf,
                         "raw_weights": args.raw_weights},
                  quality=summarise_raw(rows), rows=rows)
    print(json.dumps(result["quality"], indent=1))
    if not args.no_speed:
        result["speed"] = raw_speed(wf, args.raw_weights, args.threads)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.update_cards and args.raw_weights:
        from emcs.nn.weights import card_path

        path = card_path(args.raw_weights)
        card = json.loads(path.read_text())
        card["held_out"] = {
            "data": f"emcs.simulate.fluorescence.simulate_movie, structure {args.structure!r} (held out of "
                    f"training), seeds {args.seeds}, {args.size}x{args.size} camera px, out-of-focus haze "
                    f"{RAW_HAZE} x S (1 um defocus), background 10 photons, read noise 1.5 e-",
            "reference": f"the object on the 2x grid; affine intensity fit; {RAW_BORDER} SR px border cut",
            "command": " ".join(["python", "benchmarks/bench_sim.py"] + __import__("sys").argv[1:]),
            "machine": result["machine"],
            "levels": [{CARD_KEYS.get(k, k): v for k, v in e.items()} for e in result["quality"]],
            "speed_512": result.get("speed"),
        }
        path.write_text(json.dumps(card, indent=2) + "\n")


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

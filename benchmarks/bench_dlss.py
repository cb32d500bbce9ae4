"""Benchmark DLSS supersampling: quality per coverage and CPU speed.

Held-out images:
- the five real 512x512 STEM crops in ``../shared/data/stem-partial-scan``
  (MIT, Jeffrey Ede; never used in training);
- ``--n-sim`` simulated 512x512 images (procedural textures from
  ``emcs.simulate.textures.stem_texture`` with a seed range disjoint from training,
  through the same detector model), scored against the recorded (noisy) scan.

Each image is min-max normalised to [0, 1] (the paper's metric), subsampled on
the DLSS grid (offset (N mod s)//2) and supersampled with the network and with
bilinear, bicubic and nearest interpolation (measured pixels pasted back),
and with the network keeping its own estimate at the measured pixels too
(``net-dn``, ``emcs supersample --denoise-measured``); with ``--ensemble N``
also both averaged over N flips/rotations (``net-eN``, ``net-dn-eN``,
``emcs supersample --ensemble N``); with ``--auto`` the network and bilinear
smoothed by a width each image's own samples choose (``net-auto``,
``bilinear-auto``, ``emcs supersample --smooth auto``).
RMSE, PSNR and SSIM are computed over the whole image against the raw full
scan and against a Gaussian-blurred full scan (sigma 2.5 px, 5x5 kernel, as in
DLSS-STEM).

``--safeguard-table`` scores the self-check (``emcs supersample --safeguard``, the
default) and the lattice-safe ``--smooth auto`` on the public crops and on held-out
HAADF scans of crystals the network never saw (``benchmarks/dlss_heldout.py``);
``--tune N`` replays the self-check's thresholds on N tuning scans (never the
held-out ones); ``--tune-target blurred`` replays the default (blurred) output
instead of ``--target scan``, ``--tune-fallback plain`` with a plain-bilinear fallback.

Usage::

    python benchmarks/bench_dlss.py --out benchmarks/dlss-results.json
    python benchmarks/bench_dlss.py --safeguard-table --threads 1 --factors 4,6,8,10 \
        --out benchmarks/dlss-safeguard-results.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from emcs.compare.metrics import psnr, ssim
from emcs.dlss import smoothing
from emcs.dlss.interp import upsample
from emcs.dlss.sampling import grid_offset, subsample
from emcs.dlss.supersample import auto_smoothing, load_default_model, supersample_frame
from emcs.simulate.textures import degrade, stem_texture

# real data live beside the checkout in ../shared/data; EMCS_SHARED_DATA overrides
SHARED_DATA = Path(os.environ.get("EMCS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
REAL = [SHARED_DATA / "stem-partial-scan" / f"truth-{i}.tif" for i in range(1, 6)]
FACTORS = (4, 5, 6, 7, 8, 9, 10)
METHODS = ("net", "net-dn", "bilinear", "bicubic", "nearest")


def _norm(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    r = np.ptp(x)
    return ((x - x.min()) / r if r > 0 else x * 0).astype(np.float32)


def blur(x: np.ndarray) -> np.ndarray:
    """5x5 Gaussian, sigma 2.5 px (DLSS-STEM target blur)."""
    return ndimage.gaussian_filter(x, 2.5, truncate=0.8, mode="reflect")


def held_out(n_sim: int) -> list[tuple[str, np.ndarray]]:
    import tifffile

    images = [(f"real:{p.stem}", _norm(tifffile.imread(p))) for p in REAL if p.exists()]
    for i in range(n_sim):
        rng = np.random.default_rng(900_000 + i)  # training uses other seeds
        noisy, _ = degrade(rng, stem_texture(rng, 512))
        images.append((f"sim:{i}", _norm(noisy)))
    return images


def methods_for(ensemble: int, auto: bool = False) -> tuple[str, ...]:
    return (METHODS + ((f"net-e{ensemble}", f"net-dn-e{ensemble}") if ensemble > 1 else ())
            + (("net-auto", "bilinear-auto") if auto else ()))


def run_method(m: str, sp, s, shape, model, device) -> np.ndarray:
    """One method of :func:`methods_for` on one sparse image."""
    if m.endswith("-auto"):
        base = m[: -len("-auto")]
        sigma, _ = auto_smoothing(sp, s, shape, base, model, device)
        return supersample_frame(sp, s, shape, base, model, device, keep_measured=False, smooth=sigma)
    if m.startswith("net"):
        ens = int(m.split("-e")[1]) if "-e" in m else 1
        return supersample_frame(sp, s, shape, "net", model, device, keep_measured="-dn" not in m, ensemble=ens)
    return supersample_frame(sp, s, shape, m, model, device)


def score(images, model, device, factors=FACTORS, methods=METHODS):
    rows = []
    for name, img in images:
        ref_raw, ref_blur = img, blur(img)
        for s in factors:
            sp = subsample(img, s)
            for m in methods:
                out = run_method(m, sp, s, img.shape, model, device)
                for target, ref in (("raw", ref_raw), ("blurred", ref_blur)):
                    rows.append(
                        {
                            "image": name,
                            "factor": s,
                            "method": m,
                            "target": target,
                            "rmse": float(np.sqrt(np.mean((out - ref) ** 2))),
                            "psnr": float(psnr(out, ref, data_range=1.0)),
                            "ssim": float(ssim(out, ref, data_range=1.0)),
                        }
                    )
    return rows


def blur_diagnostic(images, model, device, factors=(4, 7, 10)) -> str:
    """How much of the error against the blurred scan is noise: RMSE ratios to bilinear of the
    net, the net with --denoise-measured, and each of them (and bilinear) blurred with the target's
    own kernel, on the real crops. A diagnostic only; emcs has no such option."""
    lines = ["| coverage | net | net-dn | blur(net) | blur(net-dn) | blur(bilinear) |", "|---|---|---|---|---|---|"]
    real = [(n, im) for n, im in images if n.startswith("real")]
    for s in factors:
        acc: dict = {}
        for _, img in real:
            ref, sp = blur(img), subsample(img, s)
            outs = {"net": supersample_frame(sp, s, img.shape, "net", model, device),
                    "net-dn": supersample_frame(sp, s, img.shape, "net", model, device, keep_measured=False),
                    "bilinear": supersample_frame(sp, s, img.shape, "bilinear", model, device)}
            outs.update({f"blur({k})": blur(v) for k, v in list(outs.items())})
            for k, v in outs.items():
                acc.setdefault(k, []).append(float(np.sqrt(np.mean((v - ref) ** 2))))
        m = {k: np.mean(v) / np.mean(acc["bilinear"]) for k, v in acc.items()}
        lines.append(f"| 1/{s * s} | " + " | ".join(f"{m[k]:.3f}" for k in
                     ("net", "net-dn", "blur(net)", "blur(net-dn)", "blur(bilinear)")) + " |")
    return "\n".join(lines)


def smooth_diagnostic(images, model, device, factors=(4, 10), sigmas=(1, 2, 4, 8)) -> str:
    """How far plain smoothing gets against the blurred scan on the real crops: RMSE ratios to
    bilinear of bilinear and of the net's ``--denoise-measured`` output, each smoothed with a
    Gaussian of every sigma. The sigma is picked on the test crops, so the best column is an
    optimistic reference, not a method (``emcs supersample --smooth auto`` picks it per frame
    from the scan's own samples instead)."""
    kinds = ("bilinear", "net-dn")
    head = [f"g{sg}({k})" for k in kinds for sg in sigmas]
    lines = ["| coverage | net | net-dn | " + " | ".join(head) + " |", "|---" * (len(head) + 3) + "|"]
    real = [im for n, im in images if n.startswith("real")]
    for s in factors:
        acc: dict = {}
        for img in real:
            ref, sp = blur(img), subsample(img, s)
            outs = {"bilinear": supersample_frame(sp, s, img.shape, "bilinear", model, device),
                    "net": supersample_frame(sp, s, img.shape, "net", model, device),
                    "net-dn": supersample_frame(sp, s, img.shape, "net", model, device, keep_measured=False)}
            for k in kinds:
                for sg in sigmas:
                    outs[f"g{sg}({k})"] = smoothing.smooth(outs[k], sg)
            for k, v in outs.items():
                acc.setdefault(k, []).append(float(np.sqrt(np.mean((v - ref) ** 2))))
        m = {k: np.mean(v) / np.mean(acc["bilinear"]) for k, v in acc.items()}
        lines.append(f"| 1/{s * s} | " + " | ".join(f"{m[k]:.3f}" for k in ["net", "net-dn"] + head) + " |")
    return "\n".join(lines)


def summarise(rows, group: str, factors=FACTORS, methods=METHODS) -> str:
    sel = [r for r in rows if r["image"].startswith(group)]
    lines = []
    for target in ("raw", "blurred"):
        lines.append(f"\n**{group} images, target = {target} full scan** (mean over images)\n")
        extra = [m for m in methods if m not in METHODS]
        lines.append("| coverage | " + " | ".join(f"{m} RMSE" for m in methods)
                     + " | net/bilinear | net-dn/bilinear | " + "".join(f"{m}/bilinear | " for m in extra)
                     + "net PSNR | bilinear PSNR | net SSIM | bilinear SSIM |")
        lines.append("|---" * (len(methods) + 7 + len(extra)) + "|")
        for s in factors:
            def mean(m, k, s=s, target=target):
                v = [r[k] for r in sel if r["factor"] == s and r["method"] == m and r["target"] == target]
                return float(np.mean(v))
            rm = {m: mean(m, "rmse") for m in methods}
            lines.append(
                f"| 1/{s * s} | " + " | ".join(f"{rm[m]:.4f}" for m in methods)
                + f" | {rm['net'] / rm['bilinear']:.3f} | {rm['net-dn'] / rm['bilinear']:.3f}"
                + "".join(f" | {rm[m] / rm['bilinear']:.3f}" for m in extra)
                + f" | {mean('net', 'psnr'):.2f} | "
                f"{mean('bilinear', 'psnr'):.2f} | {mean('net', 'ssim'):.3f} | {mean('bilinear', 'ssim'):.3f} |"
            )
    return "\n".join(lines)


SAFEGUARD_FACTORS = (4, 6, 8, 10)
#: methods of the safeguard table; "-sg": with the self-check, "-old": the smoothing width the
#: held-out samples alone choose (before the spectral cap and the significance test)
SAFEGUARD_METHODS = ("bilinear", "net", "net-sg", "net-dn", "net-dn-sg", "net-auto", "net-auto-sg",
                     "net-auto-old", "bilinear-auto", "bilinear-auto-old")


def safeguard_outputs(img, s, model, device, coarse_cache=None) -> tuple[dict, dict]:
    """Every output of :data:`SAFEGUARD_METHODS` for one image and pitch, and what was chosen.

    Shares the network passes: one for the output, one for the self-check, four for the
    held-out smoothing choice. ``coarse_cache`` (a dict) keeps the self-check's network pass
    so that :func:`tune` can replay the check with other thresholds.
    """
    from emcs.dlss.safeguard import blend
    from emcs.dlss.supersample import check_net, net_estimate

    shape = img.shape
    sp = subsample(img, s)
    oy, ox = grid_offset(shape[0], s), grid_offset(shape[1], s)
    raw = net_estimate(sp, s, shape, model, device)
    bil = upsample(sp, s, shape, "bilinear")
    net = raw.copy()
    net[oy::s, ox::s] = sp
    verdict = check_net(sp, s, shape, model, device)
    sigma, err = auto_smoothing(sp, s, shape, "net", model, device)
    sigma_old = smoothing.SMOOTH_SIGMAS[int(np.argmin(err))]
    b_sigma, b_err = auto_smoothing(sp, s, shape, "bilinear")
    b_sigma_old = smoothing.SMOOTH_SIGMAS[int(np.argmin(b_err))]
    outs = {"bilinear": bil, "net": net, "net-sg": blend(net, bil, verdict), "net-dn": raw,
            "net-dn-sg": blend(raw, bil, verdict), "net-auto": smoothing.smooth(raw, sigma),
            "net-auto-sg": smoothing.smooth(blend(raw, bil, verdict), sigma),
            "net-auto-old": smoothing.smooth(raw, sigma_old),
            "bilinear-auto": smoothing.smooth(bil, b_sigma), "bilinear-auto-old": smoothing.smooth(bil, b_sigma_old)}
    info = {"fallback_fraction": verdict.fallback_fraction, "net_weight": float(verdict.weights.mean()),
            "sigma": sigma, "sigma_old": sigma_old, "bilinear_sigma": b_sigma, "bilinear_sigma_old": b_sigma_old}
    return outs, info


def safeguard_rows(images, model, device, factors=SAFEGUARD_FACTORS) -> list[dict]:
    rows = []
    for name, img in images:
        targets = {"raw": img, "blurred": blur(img)}
        for s in factors:
            t0 = time.time()
            outs, info = safeguard_outputs(img, s, model, device)
            for m, out in outs.items():
                for target, ref in targets.items():
                    rows.append({"image": name, "factor": s, "method": m, "target": target,
                                 "rmse": float(np.sqrt(np.mean((out - ref) ** 2))), **info})
            print(f"{name} s={s}: {time.time() - t0:.0f} s, fallback {info['fallback_fraction']:.2f}, "
                  f"sigma {info['sigma']} (old {info['sigma_old']}), bilinear sigma {info['bilinear_sigma']} "
                  f"(old {info['bilinear_sigma_old']})", file=sys.stderr, flush=True)
    return rows


def safeguard_table(rows, group: str, target: str = "blurred", factors=SAFEGUARD_FACTORS) -> str:
    """Markdown: mean RMSE / mean bilinear RMSE per method and coverage, worst image too."""
    sel = [r for r in rows if r["image"].startswith(group) and r["target"] == target]
    names = sorted({r["image"] for r in sel})
    lines = ["| method | " + " | ".join(f"1/{s * s}" for s in factors) + " | worst image (ratio) |",
             "|---" * (len(factors) + 2) + "|"]

    def rmse(m, s, name=None):
        return float(np.mean([r["rmse"] for r in sel if r["method"] == m and r["factor"] == s
                              and (name is None or r["image"] == name)]))

    for m in SAFEGUARD_METHODS[1:]:
        cells = [f"{rmse(m, s) / rmse('bilinear', s):.3f}" for s in factors]
        worst = max((rmse(m, s, n) / rmse("bilinear", s, n), n, s) for n in names for s in factors)
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {worst[0]:.3f} ({worst[1]}, 1/{worst[2] ** 2}) |")
    fb = [f"{np.mean([r['fallback_fraction'] for r in sel if r['factor'] == s]):.2f}" for s in factors]
    lines.append("| (safeguard: fraction of tiles fallen back) | " + " | ".join(fb) + " | |")
    return "\n".join(lines)


TUNE_GRID = ((-2.0, 1.0), (-1.0, 2.0), (0.0, 2.0), (1.0, 3.0), (2.0, 4.0))
#: thresholds replayed for the blurred-target output (``--tune-target blurred``)
TUNE_GRID_BLURRED = tuple((z0, z1) for z0 in (-8.0, -6.0, -5.0, -4.0, -3.0, -2.0, -1.0, 0.0)
                          for z1 in (-1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0) if z1 > z0)


def tune(images, model, device, factors=SAFEGUARD_FACTORS, tiles=(12, 16, 32), target="scan",
         fallback="blurred") -> str:
    """Markdown: the self-check's thresholds (Z_DOUBT, Z_TRUST) and tile size replayed on the
    tuning scans; the default mode (net-sg) / bilinear RMSE against the blurred scan per coverage,
    then mean and worst over all cases against the blurred and the raw scan.

    ``target="blurred"`` replays the output of ``--target blurred`` instead (the blend, its
    samples pasted back, through the paper's kernel) over :data:`TUNE_GRID_BLURRED`; the ratios
    stay against plain bilinear. With ``fallback="plain"`` that output falls back to plain
    bilinear instead (the network's estimate blurred, then blended with unblurred bilinear)."""
    from emcs.dlss import safeguard
    from emcs.dlss.supersample import net_estimate

    cases = []
    for _name, img in images:
        for s in factors:
            sp = subsample(img, s)
            off = (grid_offset(img.shape[0], s), grid_offset(img.shape[1], s))
            net = net_estimate(sp, s, img.shape, model, device)
            net[off[0]::s, off[1]::s] = sp
            virtual = net_estimate(sp[::2, ::2], s, safeguard.virtual_shape(sp.shape, s), model, device,
                                   offset=(0, 0))  # the self-check's network pass (check_net)
            cases.append((s, sp, off, img, net, upsample(sp, s, img.shape, "bilinear"), virtual, blur(img)))

    def ratios(out, c):
        return [np.sqrt(np.mean((out - ref) ** 2)) / np.sqrt(np.mean((c[5] - ref) ** 2)) for ref in (c[7], c[3])]

    head = " | ".join(f"1/{s * s}" for s in factors)
    lines = [f"| tile (samples) | Z_DOUBT | Z_TRUST | {head} | blurred: mean / worst | raw: mean / worst "
             "| fallback |", "|---" * (len(factors) + 6) + "|"]

    def row(label, outs, fraction):
        r = np.array([ratios(o, c) for o, c in zip(outs, cases, strict=True)])
        per = [np.mean([r[k, 0] for k, c in enumerate(cases) if c[0] == s]) for s in factors]
        return (f"| {label} | " + " | ".join(f"{v:.3f}" for v in per) + f" | {r[:, 0].mean():.3f} / "
                f"{r[:, 0].max():.3f} | {r[:, 1].mean():.3f} / {r[:, 1].max():.3f} | {fraction:.2f} |")

    def output(c, verdict):
        # the network (c[4], samples pasted) and bilinear (c[5]) both hold the samples exactly, so
        # any blend of them does too: blurring it is what supersample_frame's blurred target does
        if target == "blurred" and fallback == "plain":
            out = smoothing.paper_blur(c[4])
            return out if verdict is None else safeguard.blend(out, c[5], verdict)
        out = c[4] if verdict is None else safeguard.blend(c[4], c[5], verdict)
        return smoothing.paper_blur(out) if target == "blurred" else out

    saved = safeguard.TILE_SAMPLES, safeguard.Z_DOUBT, safeguard.Z_TRUST
    try:
        for t in tiles:
            for z0, z1 in (TUNE_GRID_BLURRED if target == "blurred" else TUNE_GRID):
                safeguard.TILE_SAMPLES, safeguard.Z_DOUBT, safeguard.Z_TRUST = t, z0, z1
                verdicts = [safeguard.check(c[1], c[0], c[3].shape, c[2], lambda a, b, v=c[6]: v) for c in cases]
                outs = [output(c, v) for c, v in zip(cases, verdicts, strict=True)]
                lines.append(row(f"{t} | {z0:g} | {z1:g}", outs, np.mean([v.fallback_fraction for v in verdicts])))
    finally:
        safeguard.TILE_SAMPLES, safeguard.Z_DOUBT, safeguard.Z_TRUST = saved
    lines.append(row("(no safeguard) | |", [output(c, None) for c in cases], 0.0))
    return "\n".join(lines)


def speed(model, device, repeats: int = 5) -> dict:
    rng = np.random.default_rng(1)
    img = stem_texture(rng, 512)
    res = {}
    for s in (4, 10):
        sp = subsample(img, s)
        for m in ("net", "net-auto", "bilinear"):
            run_method(m, sp, s, img.shape, model, device)  # warm-up
            t = time.perf_counter()
            for _ in range(repeats):
                run_method(m, sp, s, img.shape, model, device)
            res[f"{m} s={s}"] = repeats / (time.perf_counter() - t)
    return res


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-sim", type=int, default=8)
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="write all per-image rows as JSON")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--factors", default="4,5,6,7,8,9,10")
    ap.add_argument("--ensemble", type=int, default=1, choices=(1, 2, 4, 8),
                    help="also score the net averaged over this many flips/rotations")
    ap.add_argument("--auto", action="store_true",
                    help="also score the net and bilinear with the self-calibrated smoothing (--smooth auto)")
    ap.add_argument("--blur-diagnostic", action="store_true",
                    help="only print RMSE/bilinear on the real crops with the outputs also blurred like the target")
    ap.add_argument("--smooth-diagnostic", action="store_true",
                    help="only print RMSE/bilinear on the real crops of bilinear and the net smoothed by Gaussians")
    ap.add_argument("--safeguard-table", action="store_true",
                    help="only score the self-check and the smoothing choice (net/bilinear per mode) on the "
                         "public crops and --n-held held-out scans (benchmarks/dlss_heldout.py)")
    ap.add_argument("--n-held", type=int, default=8, help="held-out scans for --safeguard-table")
    ap.add_argument("--tune", type=int, default=0, metavar="N",
                    help="only replay the self-check's thresholds on N tuning scans (not the held-out ones)")
    ap.add_argument("--tune-target", default="scan", choices=("scan", "blurred"),
                    help="--tune: replay the output of --target scan (net-sg) or --target blurred")
    ap.add_argument("--tune-fallback", default="blurred", choices=("blurred", "plain"),
                    help="--tune-target blurred: fall back to blurred (as shipped) or plain bilinear")
    ap.add_argument("--tiles", default="12,16,32", help="--tune: self-check tile sizes (samples) to replay")
    ap.add_argument("--update-card", action="store_true",
                    help="add the mean held-out RMSEs to the model card (.json next to the weights)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    model, card = load_default_model(args.model, device)
    factors = tuple(int(f) for f in args.factors.split(","))
    if args.tune:
        import dlss_heldout

        tiles = tuple(int(t) for t in args.tiles.split(","))
        print(tune([(n, im) for n, im, _ in dlss_heldout.tuning(args.tune)], model, device, factors, tiles,
                   args.tune_target, args.tune_fallback))
        return
    if args.safeguard_table:
        safeguard_main(args, model, device, factors)
        return
    if args.blur_diagnostic:
        print(blur_diagnostic(held_out(0), model, device))
        return
    if args.smooth_diagnostic:
        print(smooth_diagnostic(held_out(0), model, device, factors))
        return
    images = held_out(args.n_sim)
    methods = methods_for(args.ensemble, args.auto)
    rows = score(images, model, device, factors, methods)
    print(f"model: {card.get('architecture')} {card.get('config')} steps {card.get('steps')}, "
          f"{card.get('parameters')} parameters")
    print(summarise(rows, "real", factors, methods))
    if args.n_sim:
        print(summarise(rows, "sim", factors, methods))
    if not args.no_speed:
        sp = speed(model, device)
        print(f"\n**Speed, 512x512 output, {args.threads} torch threads (images/s)**\n")
        for k, v in sp.items():
            print(f"- {k}: {v:.2f} images/s")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    if args.update_card:
        update_card(args.model, rows, factors, args.n_sim, methods)


def safeguard_main(args, model, device, factors) -> None:
    import dlss_heldout

    held = dlss_heldout.heldout(args.n_held)
    images = held_out(0) + [(n, im) for n, im, _ in held]
    rows = safeguard_rows(images, model, device, factors)
    for group in ("real", "held"):
        for target in ("blurred", "raw"):
            print(f"\n**{group}, target = {target} full scan** (mean RMSE / mean bilinear RMSE)\n")
            print(safeguard_table(rows, group, target, factors))
    if args.out:
        meta = {n: info for n, _, info in held}
        Path(args.out).write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "held_out": meta,
                                              "rows": rows}, indent=1, default=float) + "\n")


def card_metrics(rows, factors, methods=METHODS) -> dict:
    """Mean RMSE per image group, target, coverage and method."""
    out = {}
    for group in ("real", "sim"):
        for target in ("raw", "blurred"):
            table = {}
            for s in factors:
                table[f"1/{s * s}"] = {
                    m: round(float(np.mean([r["rmse"] for r in rows if r["image"].startswith(group)
                                            and r["factor"] == s and r["method"] == m
                                            and r["target"] == target])), 5)
                    for m in methods
                }
            out[f"{group}_vs_{target}"] = table
    return out


def update_card(model_path, rows, factors, n_sim, methods=METHODS) -> None:
    from emcs.dlss.supersample import default_model_path
    from emcs.nn.weights import card_path

    cpath = card_path(model_path or default_model_path())
    card = json.loads(cpath.read_text())
    card["held_out_metrics"] = {
        "metric": ("RMSE on [0,1] min-max normalised images, whole image, measured pixels pasted back "
                   "(net-dn: the network's estimate kept there, --denoise-measured; net-eN: "
                   "--ensemble N; net-auto / bilinear-auto: --smooth auto, the whole output smoothed "
                   "by a width chosen from the scan's own samples)"),
        "images": "real: 5 STEM crops 512x512 (Jeffrey-Ede/partial-STEM example_scans, MIT); "
                  f"sim: {n_sim} held-out 512x512 procedural images (seeds 900000+) through the detector model",
        "blur": "Gaussian sigma 2.5 px, 5x5 kernel (DLSS-STEM targets)",
        "command": " ".join(["python", *sys.argv]),
        **card_metrics(rows, factors, methods),
    }
    cpath.write_text(json.dumps(card, indent=2) + "\n")


if __name__ == "__main__":
    main()

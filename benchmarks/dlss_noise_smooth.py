"""Extra smoothing of the default supersample output chosen per frame from the samples' noise (issue 18, session 18).

Session 15 found the best extra Gaussian smoothing after the default output (network,
self-check, the paper's blur) nearly bimodal per frame, sigma 0 or 2, and a property of the
scan's noise rather than of the pitch alone (``benchmarks/dlss.md``). This script scores, per
frame and pitch, the default output followed by ``gaussian_filter(., sigma)`` for each sigma in
SIGMAS (RMSE against the blurred full scan, and plain bilinear), and records features of the
measured samples alone that a rule may use (:func:`sample_features`).

    EMCS_SHARED_DATA=/work/shared/data python benchmarks/dlss_noise_smooth.py rows tune OUT.json
    EMCS_SHARED_DATA=/work/shared/data python benchmarks/dlss_noise_smooth.py rows fresh OUT.json
    EMCS_SHARED_DATA=/work/shared/data python benchmarks/dlss_noise_smooth.py rows old OUT.json
    EMCS_SHARED_DATA=/work/shared/data python benchmarks/dlss_noise_smooth.py risks tune ROWS.json OUT.json

Sets (none in the network's training; ``models/dlss-unet-s4-10.json``):

- ``tune`` (for choosing): ``dlss_heldout.tuning(16)`` (seeds 7000-7015), 16 more training-like
  scenes at a wider dose range, 2-300 counts/px (seeds 7100-7115), and ssTEM sections 2 and 6;
- ``fresh`` (gate only, first scored in session 18): 16 held-out crystals of
  ``dlss_heldout.crystal`` (seeds 9300-9315, 512^2, dose 2-300 counts/px) and ssTEM sections
  10, 14, 18, 22, 26;
- ``old``: the sets of earlier sessions (public crops, held-out and own crystals, ssTEM
  4/12/20/28), looked at before; reported, and gated too.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
SIGMAS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
FACTORS = (4, 6, 8, 10)


def sample_features(sp: np.ndarray) -> dict:
    """Features of the measured samples alone: ``white`` (fraction of their variance that is a
    flat spectral floor: the Hann periodogram's median over the outer band / ln 2, as
    :func:`emcs.dlss.smoothing.spectral_risks` estimates the noise) and ``nbr`` (variance of a
    sample minus the mean of its four grid neighbours, over the samples' variance)."""
    from emcs.dlss.smoothing import sample_spectrum

    x = np.asarray(sp, np.float64)
    power, _, _, noise = sample_spectrum(x)
    p = power.copy()
    p[0, 0] = 0.0
    white = noise * (p.size - 1) / max(float(p.sum()), 1e-30)
    c = x[1:-1, 1:-1]
    m4 = (x[:-2, 1:-1] + x[2:, 1:-1] + x[1:-1, :-2] + x[1:-1, 2:]) / 4
    nbr = float(np.var(c - m4) / max(np.var(x), 1e-30))
    return {"white": float(white), "nbr": nbr}


def images(which: str) -> list[tuple[str, np.ndarray]]:
    import dlss_finetune
    import dlss_heldout
    import tifffile
    from bench_dlss import SHARED_DATA, _norm

    from emcs.simulate import sample_stem

    sstem = None

    def section(k):
        nonlocal sstem
        if sstem is None:
            sstem = tifffile.imread(SHARED_DATA / "isbi2012-sstem" / "sstem_30x512x512_uint8.tif")
        return _norm(sstem[k])

    out = []
    if which == "tune":
        out += [(name, img) for name, img, _ in dlss_heldout.tuning(16)]
        for i in range(16):
            rng = np.random.default_rng(7100 + i)
            img, _ = dlss_heldout.scan(rng, sample_stem(rng, 384) + 0.05, dose_range=(2.0, 300.0))
            out.append((f"tunewide:{i}", img))
        out += [(f"tunesstem:{k}", section(k)) for k in (2, 6)]
    elif which == "fresh":
        for i in range(16):
            rng = np.random.default_rng(9300 + i)
            clean, _ = dlss_heldout.crystal(rng, 512)
            out.append((f"fresh:{i}", dlss_heldout.scan(rng, clean, dose_range=(2.0, 300.0))[0]))
        out += [(f"freshsstem:{k}", section(k)) for k in (10, 14, 18, 22, 26)]
    elif which == "old":
        out = dlss_finetune.images(8, 8, True)
    else:
        raise SystemExit(f"unknown set {which!r}")
    return out


def rows(which: str, out: str) -> None:
    import torch
    from bench_dlss import blur
    from dlss_extra_blur import default_and_bilinear
    from scipy import ndimage

    from emcs.dlss.sampling import subsample
    from emcs.dlss.supersample import load_default_model

    torch.set_num_threads(2)
    dev = torch.device("cpu")
    model, _ = load_default_model(None, dev)
    result = []
    for name, img in images(which):
        ref = blur(img)
        for s in FACTORS:
            t0 = time.time()
            default, bil = default_and_bilinear(img, s, model, dev)
            row = {"image": name, "factor": s, **sample_features(subsample(img, s)),
                   "bilinear": float(np.sqrt(np.mean((bil - ref) ** 2)))}
            for sg in SIGMAS:
                o = ndimage.gaussian_filter(default, sg, mode="reflect") if sg else default
                row[f"x{sg}"] = float(np.sqrt(np.mean((o - ref) ** 2)))
            result.append(row)
            print(name, s, f"{time.time() - t0:.1f} s", file=sys.stderr, flush=True)
    Path(out).write_text(json.dumps(result) + "\n")


def output_risks(sp: np.ndarray, factor: int, sigmas=SIGMAS) -> np.ndarray:
    """Expected squared error of the default output smoothed by each extra width, relative to
    none, from the samples' own spectrum (the model of :func:`emcs.dlss.smoothing.spectral_risks`,
    each bin weighted by the paper blur's squared transfer, which the default output has had)."""
    from emcs.dlss.smoothing import PAPER_TAPS, sample_spectrum

    power, fy, fx, noise = sample_spectrum(sp)
    signal = np.clip(power - noise, 0.0, None)
    k = np.arange(-2, 3)

    def transfer(f):
        return np.sum(PAPER_TAPS[:, None, None] * np.cos(2 * np.pi * f[None] * k[:, None, None]), 0)

    b2 = (transfer(np.broadcast_to(fy / factor, power.shape)) * transfer(np.broadcast_to(fx / factor, power.shape))) ** 2
    f2 = (fy**2 + fx**2) / float(factor) ** 2
    base = float(np.sum(b2 * noise))
    out = []
    for sg in sigmas:
        g = np.exp(-2 * np.pi**2 * sg**2 * f2)
        out.append(float(np.sum(b2 * ((1 - g) ** 2 * signal + g**2 * noise))) / max(base, 1e-30))
    return np.array(out)


def risks(which: str, rows_json: str, out: str) -> None:
    """Add each row's :func:`output_risks` (per width in SIGMAS) to the rows of ``rows_json``."""
    from emcs.dlss.sampling import subsample

    by = {(r["image"], r["factor"]): r for r in json.loads(Path(rows_json).read_text())}
    result = []
    for name, img in images(which):
        for s in FACTORS:
            r = by[name, s]
            r["risks"] = output_risks(subsample(img, s), s).tolist()
            result.append(r)
    Path(out).write_text(json.dumps(result) + "\n")


if __name__ == "__main__":
    if sys.argv[1] == "rows":
        rows(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "risks":
        risks(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        raise SystemExit(__doc__)

"""Tuning set of the static blend (:mod:`emcs.tcs.static`): near-static and moving movies from
sources the held-out table (``bench_tcs_heldout.py``) does not use, the network's frames cached,
and the blend's settings scored on them.

Movies (:data:`TUNING`, 30 frames of 128 x 128, animated by
``bench_tcs_heldout.real_movie``: drift, gain drift of up to +-15 % plus a 4 % wobble, a local
change, counting camera):

- scenes: one clean frame of the simulator kinds ``haadf-crystal``, ``haadf-particle``,
  ``lattice``, ``fibres`` (training kinds; fine for tuning), and real images the held-out table
  does not take: ``stem-partial-scan/truth-4, 5``, ``atomsegnet-stem/Si110...``, ISBI 2012
  ssTEM sections 3, 8, 12 (the held-out movies use truth-1..3, the other three PNGs and
  sections 22, 24, 26);
- near-static: drift 0-0.1 px/frame, no rotation; moving: drift 0.3-0.8 px/frame with
  rotation 0.001-0.004 rad/frame (the held-out table's motion), so that the settings are
  chosen against both gains and losses;
- doses 5, 15, 50 counts/px; B 10, 20, 30; ``--quantize`` 0 and 1.

Seeds ``18_000_000 + i`` (the held-out table uses 17 000 000+, training 0-5)::

    python benchmarks/tune_static_blend.py decode     # encode + network, cached in $TMPDIR
    python benchmarks/tune_static_blend.py score      # the blend's variants on the cache
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_tcs_heldout as heldout  # noqa: E402

DATA = heldout.DATA
SEED = 18_000_000
NEAR = ((0.0, 0.1), (0.0, 0.0))
MOVING = ((0.2, 0.8), (0.001, 0.004))
#: (source, motion, dose)
TUNING = (
    ("haadf-crystal", NEAR, 15), ("haadf-particle", NEAR, 5), ("lattice", NEAR, 50),
    ("fibres", NEAR, 15), ("stem:truth-4.tif", NEAR, 50), ("stem:truth-5.tif", NEAR, 5),
    ("atomseg:Si110_5nmX25us_03_none_none.png", NEAR, 15), ("sstem:3", NEAR, 50),
    ("sstem:12", NEAR, 5),
    ("haadf-crystal", MOVING, 15), ("lattice", MOVING, 50), ("sstem:8", MOVING, 5),
    ("stem:truth-4.tif", MOVING, 15),
)
BS = (10, 20, 30)
QS = (0, 1)


def scene_image(source: str, seed: int) -> tuple[np.ndarray, str]:
    """A still image (any range) of a tuning source, and its name."""
    import tifffile
    from PIL import Image

    kind, _, name = source.partition(":")
    if kind == "stem":
        return tifffile.imread(DATA / "stem-partial-scan" / name).astype(np.float32), name
    if kind == "atomseg":
        path = DATA / "atomsegnet-stem" / name
        return np.asarray(Image.open(path).convert("L"), dtype=np.float32), name
    if kind == "sstem":
        stack = tifffile.imread(DATA / "isbi2012-sstem" / "sstem_30x512x512_uint8.tif")
        return stack[int(name)].astype(np.float32), f"sstem[{name}]"
    from emcs.simulate import movie

    return movie(kind, 1, (256, 256), seed=seed).clean[0], kind


def tuning_movie(i: int, size: int, cache: Path) -> dict:
    """Clean frames, counts and scale of tuning movie ``i`` (cached)."""
    from emcs.simulate.detector import apply_dose

    path = cache / f"tune-{i}-{size}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    source, motion, dose = TUNING[i]
    rng = np.random.default_rng(SEED + i)
    clean, name = heldout.real_movie("tune", i, size, rng, image=scene_image(source, SEED + i),
                                     motion=motion)
    counts = apply_dose(clean, dose, rng=rng)
    movie = {"clean": clean, "counts": counts, "scale": np.float64(clean.mean() / dose)}
    np.savez(path, **movie)
    return movie


def network_case(i: int, B: int, q: int, movie: dict, work: Path) -> dict:
    """Encode the first B frames as ``emcs encode``, decode with the default network; the
    scaled measurement, the network's scaled frames and what is needed to score them."""
    from emcs.tcs import decoders
    from emcs.tcs.container import open_container
    from emcs.tcs.decode import choose_noise_level
    from emcs.tcs.encode import encode_stack

    frames = work / "frames.npy"
    np.save(frames, movie["counts"][:B])
    out = work / f"tune-{i}-B{B}-q{q}.npz"
    encode_stack(frames, out, B=B, seed=SEED + i, density=0.5, force=True, pack=None, quantize=q or None,
                 threads=1)
    with open_container(out) as c:
        y = next(iter(c.blocks([1])))
        op = c.operator
        y = op.scale_measurements(y, c.value_range, B)
        net = decoders.get_decoder(decoders.select_decoder("auto", B, c.density)[0])
        x = np.asarray(net(y, op), np.float32)
        _, sigma = choose_noise_level(c)
        lo, hi = c.value_range
    return {"x": x, "y": y, "sigma": np.float64(sigma), "lo": np.float64(lo), "hi": np.float64(hi),
            "container": str(out)}


def decode(args) -> None:
    import torch

    torch.set_num_threads(1)
    args.cache.mkdir(parents=True, exist_ok=True)
    for i in range(len(TUNING)):
        movie = tuning_movie(i, args.size, args.cache)
        for B in BS:
            for q in QS:
                path = args.cache / f"net-{i}-B{B}-q{q}.npz"
                if not path.exists():
                    np.savez(path, **network_case(i, B, q, movie, args.cache))
        print(f"movie {i} {TUNING[i][0]} done", flush=True)


def psnr(frames_scaled: np.ndarray, case, movie: dict, B: int) -> float:
    """Mean PSNR over frames of scaled frames against the clean truth (the table's score)."""
    from emcs.compare.metrics import psnr as psnr_of

    lo, hi = float(case["lo"]), float(case["hi"])
    x = np.clip(frames_scaled.reshape(B, *frames_scaled.shape[-2:]) * (hi - lo) + lo, lo, hi)
    clean = movie["clean"][:B]
    r = float(clean.max() - clean.min())
    return float(np.mean([psnr_of(f * movie["scale"], t, r) for f, t in zip(x, clean, strict=True)]))


def load(args):
    for i in range(len(TUNING)):
        movie = tuning_movie(i, args.size, args.cache)
        for B in BS:
            for q in QS:
                with np.load(args.cache / f"net-{i}-B{B}-q{q}.npz", allow_pickle=False) as z:
                    yield i, B, q, movie, {k: z[k] for k in z.files}


def score_settings(cases: list, settings) -> list[dict]:
    """The blend's PSNR gain over the network on every cached case."""
    from emcs.tcs.operator import TcsOperator
    from emcs.tcs.static import blend_measurement

    out = []
    for i, B, q, movie, c in cases:
        op = TcsOperator.generated(seed=SEED + i, B=B, frame_shape=c["y"].shape[-2:], density=0.5)
        lo, hi = float(c["lo"]), float(c["hi"])
        x, stats = blend_measurement(c["x"][0], c["y"][0], op.masks(B), float(c["sigma"]),
                                     offset=lo / (hi - lo), quantize=q, settings=settings)
        before = psnr(c["x"], c, movie, B)
        out.append(dict(i=i, B=B, q=q, near=TUNING[i][1] is NEAR, before=before,
                        gain=psnr(x, c, movie, B) - before, **stats))
    return out


def summary(rows: list[dict]) -> str:
    parts = []
    for name, sel in (("near", lambda r: r["near"]), ("moving", lambda r: not r["near"])):
        for B in BS:
            g = [r["gain"] for r in rows if sel(r) and r["B"] == B]
            parts.append(f"{name} B{B} {np.mean(g):+.2f} (min {min(g):+.2f})")
    return " | ".join(parts)


def score(args) -> None:
    from emcs.tcs.static import with_settings

    cases = list(load(args))
    for spec in args.grid:
        settings = with_settings(**{k: type(getattr(with_settings(), k))(v) for k, v in
                                    (kv.split("=") for kv in spec.split(",") if kv)})
        rows = score_settings(cases, settings)
        if args.verbose:
            for r in rows:
                print(f"  {r['i']:2d} {TUNING[r['i']][0][:14]:14s} B{r['B']} q{r['q']} "
                      f"{r['before']:.2f} {r['gain']:+.2f} alpha {r['alpha']:.2f} "
                      f"drift {r['drift_px']:.2f}")
        print(f"{spec or 'default'}: {summary(rows)}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["decode", "score"])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "static_tune")
    p.add_argument("--grid", nargs="*", default=[""],
                   help="score: settings to try, e.g. drift_lo=1,drift_hi=2 (BlendSettings fields)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args()
    if args.what == "decode":
        decode(args)
    else:
        score(args)


if __name__ == "__main__":
    main()

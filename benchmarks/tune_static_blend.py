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
- near-static: drift 0-0.1 px/frame, no rotation; moving: drift 0.2-0.8 px/frame with
  rotation 0.001-0.004 rad/frame (the held-out table's motion), so that the settings are
  chosen against both gains and losses; drifting (movies 13-22, the drift blend of
  :mod:`emcs.tcs.drift`): drift 0.1-0.8 px/frame, no rotation or 0.0003-0.001 rad/frame;
- doses 5, 15, 50 counts/px; B 10, 20, 30; ``--quantize`` 0 and 1.

Seeds ``18_000_000 + i`` (the held-out table uses 17 000 000+, training 0-5)::

    python benchmarks/tune_static_blend.py decode     # encode + network, cached in $TMPDIR
    python benchmarks/tune_static_blend.py score      # the blend's variants on the cache
    python benchmarks/tune_static_blend.py score --drift --grid "" "/rate_noise=1"
                                       # the drift blend against the static one
    python benchmarks/tune_static_blend.py paths      # drift paths: network / GAP-TV frames vs clean
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
#: rigid stage drift (the drift-compensated still image, :mod:`emcs.tcs.drift`): no rotation
#: or a small one
DRIFT = ((0.1, 0.8), (0.0, 0.0))
DRIFT_ROT = ((0.1, 0.8), (0.0003, 0.001))
#: (source, motion, dose)
TUNING = (
    ("haadf-crystal", NEAR, 15), ("haadf-particle", NEAR, 5), ("lattice", NEAR, 50),
    ("fibres", NEAR, 15), ("stem:truth-4.tif", NEAR, 50), ("stem:truth-5.tif", NEAR, 5),
    ("atomseg:Si110_5nmX25us_03_none_none.png", NEAR, 15), ("sstem:3", NEAR, 50),
    ("sstem:12", NEAR, 5),
    ("haadf-crystal", MOVING, 15), ("lattice", MOVING, 50), ("sstem:8", MOVING, 5),
    ("stem:truth-4.tif", MOVING, 15),
    ("haadf-crystal", DRIFT, 5), ("lattice", DRIFT_ROT, 15), ("fibres", DRIFT, 50),
    ("stem:truth-5.tif", DRIFT, 15), ("stem:truth-4.tif", DRIFT_ROT, 5),
    ("atomseg:Si110_5nmX25us_03_none_none.png", DRIFT, 50), ("sstem:3", DRIFT_ROT, 15),
    ("sstem:12", DRIFT, 5), ("sstem:8", DRIFT, 15), ("haadf-particle", DRIFT_ROT, 50),
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


def encode_case(i: int, B: int, q: int, movie: dict, work: Path) -> Path:
    """The container of tuning movie ``i``'s first B frames, encoded as ``emcs encode`` does
    (seed ``SEED + i``, density 0.5, ``--quantize q``)."""
    from emcs.tcs.encode import encode_stack

    frames = work / "frames.npy"
    np.save(frames, movie["counts"][:B])
    out = work / f"tune-{i}-B{B}-q{q}.npz"
    encode_stack(frames, out, B=B, seed=SEED + i, density=0.5, force=True, pack=None, quantize=q or None,
                 threads=1)
    return out


def network_case(i: int, B: int, q: int, movie: dict, work: Path) -> dict:
    """Encode the first B frames as ``emcs encode``, decode with the default network; the
    scaled measurement, the network's scaled frames and what is needed to score them."""
    from emcs.tcs import decoders
    from emcs.tcs.container import open_container
    from emcs.tcs.decode import choose_noise_level

    out = encode_case(i, B, q, movie, work)
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


def score_settings(cases: list, settings, drift=None) -> list[dict]:
    """The blend's PSNR gain over the network on every cached case (``drift``: the drift
    blend's :class:`~emcs.tcs.drift.DriftSettings`, also its gain over the static blend)."""
    from emcs.tcs.drift import blend_drifting
    from emcs.tcs.operator import TcsOperator
    from emcs.tcs.static import blend_measurement

    out = []
    for i, B, q, movie, c in cases:
        op = TcsOperator.generated(seed=SEED + i, B=B, frame_shape=c["y"].shape[-2:], density=0.5)
        lo, hi = float(c["lo"]), float(c["hi"])
        args = (c["x"][0], c["y"][0], op.masks(B), float(c["sigma"]))
        kw = dict(offset=lo / (hi - lo), quantize=q, settings=settings)
        x, stats = blend_measurement(*args, **kw)
        before = psnr(c["x"], c, movie, B)
        row = dict(i=i, B=B, q=q, kind=kind_of(i), before=before, gain=psnr(x, c, movie, B) - before,
                   **stats)
        if drift is not None:
            xd, dstats = blend_drifting(*args, **kw, drift=drift)
            row.update(static_gain=row["gain"], gain=psnr(xd, c, movie, B) - before,
                       shift_px=dstats["shift_px"], mode=dstats["mode"], alpha=dstats["alpha"])
        out.append(row)
    return out


def kind_of(i: int) -> str:
    motion = TUNING[i][1]
    return {NEAR: "near", MOVING: "moving"}.get(motion, "drift")


def summary(rows: list[dict]) -> str:
    parts = []
    for name in ("near", "moving", "drift"):
        for B in BS:
            sel = [r for r in rows if r["kind"] == name and r["B"] == B]
            if not sel:
                continue
            g = [r["gain"] for r in sel]
            text = f"{name} B{B} {np.mean(g):+.2f} (min {min(g):+.2f})"
            if "static_gain" in sel[0]:
                d = [r["gain"] - r["static_gain"] for r in sel]
                text += f" vs static {np.mean(d):+.2f} (min {min(d):+.2f})"
            parts.append(text)
    return "\n  ".join(parts)


def parse(spec: str, base):
    from dataclasses import replace

    return replace(base, **{k: type(getattr(base, k))(v) for k, v in
                            (kv.split("=") for kv in spec.split(",") if kv)})


def score(args) -> None:
    from emcs.tcs.drift import DEFAULT_DRIFT
    from emcs.tcs.static import DEFAULT_SETTINGS

    cases = [c for c in load(args) if args.movies is None or c[0] in args.movies]
    for spec in args.grid:
        settings, _, drift_spec = spec.partition("/")
        drift = parse(drift_spec, DEFAULT_DRIFT) if args.drift else None
        rows = score_settings(cases, parse(settings, DEFAULT_SETTINGS), drift)
        if args.verbose:
            for r in rows:
                extra = (f" static {r['static_gain']:+.2f} shift {r['shift_px']:.1f} {r['mode']}"
                         if "static_gain" in r else "")
                print(f"  {r['i']:2d} {TUNING[r['i']][0][:14]:14s} {r['kind']:6s} B{r['B']} q{r['q']} "
                      f"{r['before']:.2f} {r['gain']:+.2f} alpha {r['alpha']:.2f}{extra}")
        print(f"{spec or 'default'}:\n  {summary(rows)}", flush=True)


def paths(args) -> None:
    """The drift path (:func:`emcs.tcs.drift.frame_path`) from the network's and from GAP-TV's
    frames against the path from the clean frames, on the drifting movies (Q = 0)."""
    from emcs.tcs import decoders
    from emcs.tcs.drift import frame_path
    from emcs.tcs.operator import TcsOperator
    from emcs.tcs.static import DEFAULT_SETTINGS, gains_and_mean

    def path(x):
        return frame_path(x, gains_and_mean(x, DEFAULT_SETTINGS.window, 0.0)[0])

    gap = decoders.get_decoder(decoders.GAP_TV)
    errors = []
    for i, B, q, movie, c in load(args):
        if kind_of(i) != "drift" or q:
            continue
        op = TcsOperator.generated(seed=SEED + i, B=B, frame_shape=c["y"].shape[-2:], density=0.5)
        truth = path(movie["clean"][:B].astype(np.float32))
        net = np.abs(path(c["x"][0]) - truth).max()
        gaptv = np.abs(path(np.asarray(gap(c["y"], op), np.float32)[0]) - truth).max()
        errors.append((net, gaptv))
        print(f"  {i:2d} {TUNING[i][0][:16]:16s} B{B}: path span {np.abs(truth).max():5.2f} px, largest error "
              f"network {net:.2f}, GAP-TV {gaptv:.2f}", flush=True)
    print("median largest error: network {:.2f} px, GAP-TV {:.2f} px".format(*np.median(errors, axis=0)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["decode", "score", "paths"])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "static_tune")
    p.add_argument("--grid", nargs="*", default=[""],
                   help="score: settings to try, e.g. drift_lo=1,drift_hi=2 (BlendSettings fields), "
                        "then after a '/' DriftSettings fields, e.g. /iters=3")
    p.add_argument("--drift", action="store_true", help="score: the drift blend (against the static)")
    p.add_argument("--movies", type=lambda s: [int(v) for v in s.split(",")], help="score: only these")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args()
    if args.what == "decode":
        decode(args)
    elif args.what == "paths":
        paths(args)
    else:
        score(args)


if __name__ == "__main__":
    main()

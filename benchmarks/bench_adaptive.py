"""Benchmark of adaptive groups (``emcs encode --adaptive``): PSNR against fixed B at equal bytes.

Usage::

    python benchmarks/bench_adaptive.py --train        # choose the threshold (encoder only, ~1 min)
    python benchmarks/bench_adaptive.py                # the test table (decodes: ~15 min on 2 busy cores)
    python benchmarks/bench_adaptive.py --quick        # two movies, GAP-TV only

``--train`` runs the group-closing rule over **training movies**: simulated
clips (:func:`emcs.simulate.sample_movie`, seeds 1000 ...) with cuts, stage
jumps and bursts of motion placed at random frames, 128 x 128, Poisson counts
at 20 per pixel. For each threshold it reports the fraction of events a group
boundary lands on (a cut or jump: a group starts at the event frame or the
next one, as groups of at least 2 frames may force; a burst: a group starts
within its first three frames) and the extra closes (groups
closed before B frames away from any event) per 100 frames. The default
threshold was read off this table, never off the test movies.

The test table uses **other movies**: real HAADF/ADF-STEM crops
(``../shared/data/stem-partial-scan/truth-{1..5}.tif``, ARM200F micrographs,
Ede & Beanland, Sci. Rep. 2020; MIT (c) 2019 Jeffrey Ede), animated as a
128 x 128 field of view that drifts slowly (0.3 px/frame, bilinear), with

- ``cuts``: the field switches to another micrograph at frames 13 and 31;
- ``jumps``: the stage jumps by 30-45 px at frames 16 and 37;
- ``bursts``: the field moves at 3 px/frame during frames 14-20 and 33-38;
- ``steady``: slow drift only (the control: adaptive should change nothing);

48 frames, Poisson counts at a mean of 20 per pixel (uint16). Each movie is
encoded (seed 7, ``pack="predictive"``: lossless, the smallest containers,
whose bytes follow the information in the measurements rather than the
integer dtype a group's sums happen to fit) as

- fixed B = 10;
- adaptive, B = 10 (groups of 2-10 frames: more measurements, more bytes);
- fixed B_eq: of the fixed B = 2 .. 30, the one whose container bytes are
  closest to the adaptive run's (equal bytes to it);
- adaptive with the smallest B_max in 12, 14, 16, 18, 20, 24, 30 whose
  container is no larger than fixed B = 10's (equal or fewer bytes than it);

and decoded with GAP-TV (``method="gap-tv"``) and with ``method="auto"``
(the shipped tcs-unfold network for the group sizes its card covers, GAP-TV
for the others, per group size). PSNR (:func:`emcs.compare.metrics.psnr`) of
the decoded movie against the noise-free movie, in counts, over the whole
movie (data range: that of the noise-free movie). Results go to
``benchmarks/adaptive.json``; ``benchmarks/adaptive.md`` discusses them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

# real data live beside the checkout in ../shared/data; EMCS_SHARED_DATA overrides
SHARED_DATA = Path(os.environ.get("EMCS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
T, SIZE, DOSE, B, SEED, PACK = 48, 128, 20.0, 10, 7, "predictive"
THRESHOLDS = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)
B_MAX = (12, 14, 16, 18, 20, 24, 30)


# --------------------------------------------------------------------------- movies
def _window(img: np.ndarray, y: float, x: float) -> np.ndarray:
    """The SIZE x SIZE crop of ``img`` at fractional offset (y, x), bilinear."""
    iy, ix = int(np.floor(y)), int(np.floor(x))
    fy, fx = y - iy, x - ix
    a = img[iy:iy + SIZE + 1, ix:ix + SIZE + 1]
    return ((1 - fy) * (1 - fx) * a[:-1, :-1] + (1 - fy) * fx * a[:-1, 1:]
            + fy * (1 - fx) * a[1:, :-1] + fy * fx * a[1:, 1:])


def _path(img_count: int, kind: str, rng: np.random.Generator, events: list[int]) -> list[tuple]:
    """Per frame (image index, y, x) of a field of view: slow drift plus the kind's events."""
    y, x = rng.uniform(40, 80, 2)
    vy, vx = rng.uniform(-0.3, 0.3, 2)
    image, out = 0, []
    for t in range(T):
        if kind == "cuts" and t in events:
            image = (image + 1) % img_count
            y, x = rng.uniform(40, 80, 2)
        if kind == "jumps" and t in events:
            y, x = y + rng.choice([-1, 1]) * rng.uniform(30, 45), x + rng.choice([-1, 1]) * rng.uniform(30, 45)
        fast = kind == "bursts" and any(e <= t < e + 7 for e in events)
        y, x = y + (3.0 if fast else vy), x + (2.0 if fast else vx)
        out.append((image, y, x))
    return out


def animate(images: list[np.ndarray], kind: str, events: list[int], rng) -> np.ndarray:
    """A clean T x SIZE x SIZE movie moving over ``images`` (each larger than SIZE)."""
    path = _path(len(images), kind, rng, events)
    frames = []
    for image, y, x in path:
        img = images[image]
        H, W = img.shape
        frames.append(_window(img, float(np.clip(y, 0, H - SIZE - 2)), float(np.clip(x, 0, W - SIZE - 2))))
    return np.stack(frames).astype(np.float64)


def counts(clean: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """(Poisson counts uint16 at a mean of DOSE, the clean movie in counts)."""
    scaled = clean * (DOSE / max(clean.mean(), 1e-9))
    return rng.poisson(scaled).astype(np.uint16), scaled


def test_movies() -> dict:
    import tifffile

    folder = SHARED_DATA / "stem-partial-scan"
    images = [tifffile.imread(folder / f"truth-{i}.tif").astype(np.float64) for i in range(1, 6)]
    images = [0.05 + im / im.max() for im in images]  # a little background: no pixel at 0 counts
    spec = {"cuts": ([images[0], images[1], images[2]], [13, 31]),
            "jumps": ([images[3]], [16, 37]),
            "bursts": ([images[4]], [14, 33]),
            "steady": ([images[1]], [])}
    movies = {}
    for i, (kind, (imgs, events)) in enumerate(spec.items()):
        rng = np.random.default_rng(i)
        movies[kind] = counts(animate(imgs, kind, events, rng), rng)
    return movies


def training_movies(n_each: int = 8) -> list[tuple[str, list[int], np.ndarray]]:
    """Simulated clips with events at random frames (seeds 1000 ...): (kind, events, counts)."""
    from emcs.simulate import sample_movie

    out = []
    for i in range(3 * n_each):
        kind = ("cuts", "jumps", "bursts")[i % 3]
        rng = np.random.default_rng(1000 + i)
        events = sorted(rng.choice(np.arange(4, T - 8), 2, replace=False).tolist())
        while events[1] - events[0] < 8:
            events = sorted(rng.choice(np.arange(4, T - 8), 2, replace=False).tolist())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scenes = [sample_movie(rng, 1, (2 * SIZE, 2 * SIZE))[0].astype(np.float64) + 0.05
                      for _ in range(3)]
        movie, _ = counts(animate(scenes, kind, events, rng), rng)
        out.append((kind, events, movie))
    return out


# --------------------------------------------------------------------------- tuning
def group_starts(movie: np.ndarray, threshold: float, Bmax: int = B) -> list[int]:
    from emcs.tcs.adaptive import adaptive_groups
    from emcs.tcs.encode import noise_sigma

    return [s for s, _ in adaptive_groups(lambda a, b: movie[a:b], len(movie), Bmax, noise_sigma, threshold)]


def train() -> dict:
    movies = training_movies()
    rows = []
    for threshold in THRESHOLDS:
        hit = total = extra = 0
        for kind, events, movie in movies:
            starts = group_starts(movie, threshold)
            near = set()
            for e in events:
                window = range(e, e + (3 if kind == "bursts" else 2))  # min_frames 2: e + 1 may be the best
                hit += any(s in window for s in starts)
                total += 1
                near |= set(range(e, e + (8 if kind == "bursts" else 1)))
            ends = starts[1:]
            extra += sum(1 for s, nxt in zip(starts, ends, strict=False) if nxt - s < B and nxt not in near)
        rows.append({"threshold": threshold, "events_found": hit / total,
                     "extra_closes_per_100_frames": 100 * extra / (len(movies) * T)})
        print(f"threshold {threshold:5.2f}: events found {hit}/{total}, extra closes "
              f"{rows[-1]['extra_closes_per_100_frames']:.1f} per 100 frames", flush=True)
    return {"movies": len(movies), "rows": rows}


# --------------------------------------------------------------------------- test table
def _psnr(out_path: str, clean: np.ndarray) -> float:
    from emcs.compare.metrics import psnr

    return psnr(np.load(out_path).astype(np.float64), clean, data_range=float(clean.max() - clean.min()))


def evaluate(kind: str, movie: np.ndarray, clean: np.ndarray, methods: tuple[str, ...], tmp: str) -> list:
    from emcs.tcs.container import load_container
    from emcs.tcs.decode import decode_container
    from emcs.tcs.encode import encode_stack

    src = os.path.join(tmp, f"{kind}.npy")
    np.save(src, movie)

    def enc(name, **kw):
        out = os.path.join(tmp, f"{kind}-{name}.npz")
        res = encode_stack(src, out, seed=SEED, force=True, pack=PACK, **kw)
        return out, res

    fixed = {b: enc(f"fixed{b}", B=b) for b in range(2, 31)}
    adapt10 = enc("adaptive10", B=B, adaptive=True)
    runs = [("fixed", B, fixed[B]), ("adaptive", B, adapt10)]
    target = adapt10[1]["output_bytes"]
    b_eq = min((b for b in fixed if b != B), key=lambda b: abs(fixed[b][1]["output_bytes"] - target))
    runs.append(("fixed, bytes of adaptive B 10", b_eq, fixed[b_eq]))
    for bmax in B_MAX:
        out = enc(f"adaptive{bmax}", B=bmax, adaptive=True)
        if out[1]["output_bytes"] <= fixed[B][1]["output_bytes"]:
            runs.append(("adaptive, <= bytes of fixed B 10", bmax, out))
            break
    rows = []
    for label, b, (path, res) in runs:
        row = {"movie": kind, "encoding": label, "B": b, "measurements": res["n_measurements"],
               "groups": res["groups"], "bytes": res["output_bytes"],
               "group_sizes": load_container(path).counts.tolist()}
        for method in methods:
            notes = []
            t0 = time.perf_counter()
            dec = decode_container(path, path.replace(".npz", f"-{method}.npy"), method=method, force=True,
                                   dtype="float32", device="cpu", on_note=notes.append)
            row[f"psnr_{method}"] = round(_psnr(dec["output"], clean), 2)
            row[f"decoders_{method}"] = dec["decoders"]
            row[f"seconds_{method}"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "group_sizes"}), flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", action="store_true", help="the threshold sweep on training movies")
    ap.add_argument("--quick", action="store_true", help="cuts and steady only, GAP-TV only")
    ap.add_argument("--out", default=str(Path(__file__).with_name("adaptive.json")))
    args = ap.parse_args(argv)
    if args.train:
        result = {"train": train()}
    else:
        movies = test_movies()
        if args.quick:
            movies = {k: movies[k] for k in ("cuts", "steady")}
        methods = ("gap-tv",) if args.quick else ("gap-tv", "auto")
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for kind, (movie, clean) in movies.items():
                rows += evaluate(kind, movie, clean, methods, tmp)
        result = {"test": rows}
    old = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    Path(args.out).write_text(json.dumps({**old, **result}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Held-out TCS quality table: the default decoder against JPEG / JPEG 2000 / JPEG XL at the
container's bytes and against GAP-TV, over B, ``--quantize``, mask density and explicit masks.

Movies (:data:`MOVIES`; never used in training, never used to tune anything):

- ``stem``, ``atomseg``, ``sstem``: crops of the REAL images in ``shared/data``
  (stem-partial-scan ``truth-*.tif``, atomsegnet-stem PNGs, one ISBI 2012 ssTEM
  section), animated by :func:`real_movie`: sub-pixel drift and slow rotation
  (:func:`emcs.simulate.motion.random_motion`), a gain drift of a few %, and a
  local change (a growing or shrinking blob, or a walking cluster of spots);
- ``hrtem``: abTEM HRTEM (``hrtem-particle`` / ``hrtem-sintering`` from the
  exit-wave cache; a training kind, unseen seeds) at ~5 counts/px;
- ``cells``: the procedural kind the TCS training never saw.

Each movie is 30 frames of ``--size`` pixels, recorded by a counting camera
(:func:`emcs.simulate.detector.apply_dose`, Poisson, uint8/uint16 counts) at its
dose; the first B frames are one measurement. Movie seeds are
``SEED_BASE + 1000 * kind + movie`` (``np.random.default_rng(seed)``): training
draws ``default_rng([seed, step])`` with seeds 0 .. 5, other streams.

Every case goes through the real encoder (:func:`emcs.tcs.encode.encode_stack`,
as ``emcs encode [-B B] [--density D | --mask FILE] [--quantize Q]``: plain
container for Q = 0, the default mask-predictive packing with Q > 0) and is
decoded from the container (:func:`emcs.tcs.decode.decode_container`, the
library call of ``emcs decode``). The codecs get the bytes of the container's
measurement members (zip ``file_size``: the ``.npy`` header / packed stream of
each measurement; the container's metadata, counts and - for an explicit
mask - the bit-packed mask are not counted; both sizes are recorded). A codec
that cannot get that small is given 25 % more bytes at a time until it fits
(``over_budget``; generous to the codec). Scores: PSNR / SSIM
(:func:`emcs.compare.metrics.score_stack`) against the clean truth and the raw
noisy frames.

``--lossless-pack``: a table's Q = 0 cases packed losslessly (``emcs encode --pack
predictive``, key ``q0p``): the plain case's frames, masks and decode, only the measurement bytes
(the codecs' budget) differ. Each is encoded plain too and must hold the same measurements; the
decoders' scores of the plain case are copied from ``--reuse`` files, except for ``--verify``
methods: decoded from both containers, frames checked identical, the copied score kept beside.

Results are cached per case and method in JSON, so runs add methods without
recomputing others::

    python benchmarks/bench_tcs_heldout.py run --tables main --methods baselines \\
        --json benchmarks/tcs_heldout_baselines.json
    python benchmarks/bench_tcs_heldout.py run --tables main,density,masks --methods shipped \\
        --json benchmarks/tcs_heldout_shipped.json
    python benchmarks/bench_tcs_heldout.py run --tables main,lowB,density,masks --methods new \\
        --new-model /work/train/tcs/tcs-unfold.safetensors --json benchmarks/tcs_heldout_new.json
    python benchmarks/bench_tcs_heldout.py run --tables main,static --lossless-pack \\
        --methods drift,baselines --verify drift,gap-tv --json benchmarks/tcs_heldout_lossless.json \\
        --reuse benchmarks/tcs_heldout_{before,static,drift_main}.json
    python benchmarks/bench_tcs_heldout.py report benchmarks/tcs_heldout_*.json

Methods: ``gap-tv`` (``emcs decode --method gap-tv``), ``jpeg``, ``jpeg2000``,
``jpegxl``; ``shipped`` (emcs/models/tcs-unfold) and ``new`` (``--new-model``):
the network decodes every case, also outside its card (forced, then marked);
``default`` in the report is what ``emcs decode`` (``--method auto``) picks:
the network where its card covers B and the density, else GAP-TV. ``blend``:
``emcs decode --static-blend static`` (the auto choice, the network's frames through
:mod:`emcs.tcs.static`; settings frozen on ``tune_static_blend.py``'s tuning set);
``drift``: ``--static-blend on`` (also the drift-compensated still image,
:mod:`emcs.tcs.drift`; settings frozen on the same tuning set, drifting movies added).
The ``static`` table (near-static real-image movies, :data:`STATIC`) was defined
before any of its cases was scored.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tcs_nets import codec_at_budget, score  # noqa: E402

DATA = Path(os.environ.get("EMCS_SHARED_DATA", "/work/shared/data"))
SEED_BASE = 17_000_000
FRAMES = 30
CODECS = ("jpeg", "jpeg2000", "jpegxl")
BASELINES = ("gap-tv",) + CODECS
KIND_INDEX = {"stem": 0, "atomseg": 1, "sstem": 2, "hrtem": 3, "cells": 4}
#: (kind, movie index, dose in mean counts/pixel)
MOVIES = (
    ("stem", 0, 5), ("stem", 1, 15), ("stem", 2, 50),
    ("atomseg", 0, 5), ("atomseg", 1, 15), ("atomseg", 2, 50),
    ("sstem", 0, 5), ("sstem", 1, 15), ("sstem", 2, 50),
    ("hrtem", 0, 5), ("hrtem", 1, 5),
    ("cells", 0, 15), ("cells", 1, 50),
)
REAL_KINDS = ("stem", "atomseg", "sstem")
#: diagnostic: the real-image movies with their scenes smoothed (Gaussian, 1 px) first, which
#: takes out most of the originals' own pixel noise (part of the "clean" truth otherwise)
SMOOTHED = tuple((f"{k}-smoothed", m, d) for k, m, d in MOVIES if k in REAL_KINDS)
#: near-static row (defined before any score of it was taken): the real-image movies with a
#: drift of at most 0.05 px/frame and no rotation; the same images, crops, doses, gain drift and
#: local change (a growing blob or walking spots) as the main table's movies
STATIC = tuple((f"{k}-static", m, d) for k, m, d in MOVIES if k in REAL_KINDS)
#: kind variant -> ((drift lo, hi) px/frame, (rotation lo, hi) rad/frame) of :func:`real_movie`
MOTION = {"": ((0.2, 0.8), (0.001, 0.004)), "smoothed": ((0.2, 0.8), (0.001, 0.004)),
          "static": ((0.0, 0.05), (0.0, 0.0))}
#: every other movie (all kinds and doses): the movies of the smaller tables (CPU time)
SUBSET = MOVIES[::2]
#: table -> (B values, quantize steps, densities, mask kinds, movies)
TABLES = {
    "main": ((10, 20, 30), (0, 1, 2, 3), (0.5,), ("generated",), MOVIES),
    "lowB": ((4, 8), (0, 1, 2, 3), (0.5,), ("generated",), SUBSET),
    "density": ((10,), (0, 1), (0.2, 0.3, 0.5, 0.7, 0.8), ("generated",), SUBSET),
    "masks": ((10,), (0, 1), (0.5,), ("xor", "blocks4", "rows", "shifted"), SUBSET),
    "smoothed": ((10, 20, 30), (0,), (0.5,), ("generated",), SMOOTHED),
    "static": ((10, 20, 30), (0, 1, 2, 3), (0.5,), ("generated",), STATIC),
}
HELDOUT_MASKS = ("xor", "blocks4")
#: method -> ``static_blend`` of ``emcs decode`` (the auto choice): ``blend`` the still image only
#: (session 10's first default), ``drift`` also the drifting still image (:mod:`emcs.tcs.drift`;
#: the default since)
BLENDS = {"blend": "static", "drift": "on"}


# --------------------------------------------------------------------------- movies
def movie_seed(kind: str, m: int) -> int:
    return SEED_BASE + 1000 * KIND_INDEX[kind.split("-")[0]] + m


def source_image(kind: str, m: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A real image (float, any range) and its name: movie ``m`` of ``kind``."""
    import tifffile
    from PIL import Image

    if kind == "stem":
        path = DATA / "stem-partial-scan" / f"truth-{m % 5 + 1}.tif"
        return tifffile.imread(path).astype(np.float32), path.name
    if kind == "atomseg":
        path = sorted((DATA / "atomsegnet-stem").glob("*.png"))[m % 4]
        return np.asarray(Image.open(path).convert("L"), dtype=np.float32), path.name
    stack = tifffile.imread(DATA / "isbi2012-sstem" / "sstem_30x512x512_uint8.tif")
    k = int(rng.integers(len(stack)))
    return stack[k].astype(np.float32), f"sstem_30x512x512_uint8.tif[{k}]"


def local_change(rng: np.random.Generator, m: int, T: int, size: int) -> np.ndarray:
    """(T, size, size) additive change in units of the scene's range: a growing or shrinking
    blob (even ``m``) or a cluster of spots walking across the frame (odd ``m``)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    sign = rng.choice([-1.0, 1.0])
    out = np.zeros((T, size, size), np.float32)
    if m % 2 == 0:
        cy, cx = rng.uniform(0.3, 0.7, 2) * size
        r0, r1 = rng.uniform(2, 6), rng.uniform(10, 20)
        if rng.random() < 0.5:
            r0, r1 = r1, r0
        for t in range(T):
            r = r0 + (r1 - r0) * t / max(T - 1, 1)
            d = np.hypot(yy - cy, xx - cx)
            out[t] = sign * 0.35 / (1 + np.exp((d - r) / 1.2))
        return out
    n = int(rng.integers(3, 7))
    offsets = rng.normal(0, 3.0, (n, 2))
    start = rng.uniform(0.25, 0.75, 2) * size
    steps = rng.normal(0, 1.0, (T, 2)) + rng.uniform(-1.2, 1.2, 2)
    path = start + np.cumsum(steps, axis=0)
    for t in range(T):
        for oy, ox in offsets:
            d2 = (yy - path[t, 0] - oy) ** 2 + (xx - path[t, 1] - ox) ** 2
            out[t] += sign * 0.4 * np.exp(-d2 / (2 * 1.8**2))
    return out


def real_movie(kind: str, m: int, size: int, rng: np.random.Generator,
               image: tuple[np.ndarray, str] | None = None, motion=None) -> tuple[np.ndarray, str]:
    """A clean (FRAMES, size, size) movie in [0, 1] animated from a real image (its scene
    smoothed first for a ``-smoothed`` kind). ``image``: (image, name) instead of
    :func:`source_image`; ``motion``: ((drift lo, hi), (rotation lo, hi)) instead of the kind
    variant's :data:`MOTION`."""
    from scipy.ndimage import gaussian_filter

    from emcs.simulate.motion import random_motion, warp_movie
    from emcs.simulate.render import normalize

    base, _, variant = kind.partition("-")
    image, name = source_image(base, m, rng) if image is None else image
    margin = size // 2 + 24
    r0 = int(rng.integers(0, image.shape[0] - 2 * margin))
    c0 = int(rng.integers(0, image.shape[1] - 2 * margin))
    scene = normalize(image[r0:r0 + 2 * margin, c0:c0 + 2 * margin], 0.5, 99.5)
    if variant == "smoothed":
        scene = gaussian_filter(scene, 1.0)
        name += " smoothed"
    (s0, s1), (a0, a1) = MOTION[variant] if motion is None else motion
    motion = random_motion(rng, FRAMES, (size, size), scene.shape, speed=rng.uniform(s0, s1),
                           rotation=rng.uniform(a0, a1))
    frames = warp_movie(scene, motion, order=3)
    frames += local_change(rng, m, FRAMES, size)
    gain = 1 + rng.uniform(-0.15, 0.15) * np.linspace(0, 1, FRAMES) \
        + 0.04 * np.sin(np.linspace(0, 2 * np.pi, FRAMES) + rng.uniform(0, 2 * np.pi))
    frames = np.clip(frames, 0, None) * gain[:, None, None].astype(np.float32)
    frames = 0.05 + 0.95 * frames / frames.max()  # a small background, as on a detector
    return frames.astype(np.float32), f"{name} crop ({r0}, {c0})"


def make_movie(kind: str, m: int, dose: float, size: int, cache: Path) -> dict:
    """Clean frames, camera counts and scale (counts -> clean units) of one movie (cached)."""
    from emcs.simulate import sample_movie
    from emcs.simulate.detector import apply_dose

    path = cache / f"movie-{kind}-{m}-{size}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files} | {"source": str(z["source"])}
    rng = np.random.default_rng(movie_seed(kind, m))
    if kind.split("-")[0] in REAL_KINDS:
        clean, source = real_movie(kind, m, size, rng)
    else:
        sim_kind = {"hrtem": ("hrtem-particle", "hrtem-sintering")[m % 2], "cells": "cells"}[kind]
        clean = np.asarray(sample_movie(rng, FRAMES, (size, size), (sim_kind,)), np.float32)
        source = f"emcs.simulate {sim_kind}"
    counts = apply_dose(clean, dose, rng=rng)
    movie = {"clean": clean, "counts": counts, "scale": np.float64(clean.mean() / dose),
             "source": source}
    np.savez(path, **movie)
    return movie


# --------------------------------------------------------------------------- cases
def cases(tables: list[str], lossless: bool = False) -> list[dict]:
    """The cases of ``tables``; ``lossless``: their Q = 0 cases only, packed losslessly
    (``pack`` "predictive", key ``q0p``) instead of the plain container (``pack`` None: the
    encoder's default, plain for Q = 0, predictive with Q > 0)."""
    out, seen = [], set()
    for table in tables:
        Bs, qs, densities, masks, movies = TABLES[table]
        for B in Bs:
            for q in qs[:1] if lossless else qs:
                for d in densities:
                    for mask in masks:
                        for kind, m, dose in movies:
                            key = f"B{B}-d{d}-{mask}-q{q}{'p' if lossless else ''}-{kind}{m}"
                            if key not in seen:
                                seen.add(key)
                                out.append(dict(key=key, B=B, q=q, density=d, mask=mask,
                                                kind=kind, m=m, dose=dose,
                                                pack="predictive" if lossless else None))
    return out


def plain_key(key: str) -> str:
    """The key of a losslessly packed case's plain twin."""
    return key.replace("-q0p-", "-q0-")


def encode_case(case: dict, movie: dict, work: Path) -> tuple[Path, dict]:
    """Write the first B frames, encode them as ``emcs encode`` does; (container, byte counts)."""
    from emcs.tcs.encode import encode_stack

    B, key = case["B"], case["key"]
    frames = work / f"{key}.npy"
    np.save(frames, movie["counts"][:B])
    seed = movie_seed(case["kind"], case["m"]) % 2**32
    masks = mask_file = None
    if case["mask"] != "generated":
        from emcs.simulate.masks import structured_masks

        rng = np.random.default_rng([seed, B, 7])
        masks = structured_masks(rng, case["mask"], B, movie["counts"].shape[1:], case["density"])
        mask_file = work / f"{key}-mask.npy"
        np.save(mask_file, masks.astype(np.uint8))
    out = work / f"{key}.npz"
    encode_stack(frames, out, B=B, seed=None if masks is not None else seed, density=case["density"],
                 masks=masks, mask_source=None if mask_file is None else str(mask_file), force=True,
                 pack=case["pack"], quantize=case["q"] or None, threads=1)
    with zipfile.ZipFile(out) as zf:
        meas = sum(i.file_size for i in zf.infolist() if i.filename.startswith("measurements"))
    return out, {"measurement_bytes": int(meas), "file_bytes": out.stat().st_size,
                 "mask_density": float(masks.mean()) if masks is not None else case["density"]}


def decode_net(container: Path, model: str) -> tuple[np.ndarray, bool]:
    """Frames decoded by the network ``model`` (a path; without the static blend) and whether
    its card covers the case.

    Covered: :func:`decode_container` (``emcs decode --model PATH``); not covered, the network is
    forced with the same decode loop (:func:`emcs.tcs.decode.iter_decoded`)."""
    import torch

    from emcs.tcs.container import open_container
    from emcs.tcs.decode import iter_decoded
    from emcs.tcs.nets.api import covers, load_model_info

    with open_container(container) as c:
        covered = covers(load_model_info(model).card, c.B, c.density)
        if not covered:
            plan = {int(n): ("net", model) for n in c.counts}
            x = np.concatenate([f for _, f in iter_decoded(c, plan, device=torch.device("cpu"),
                                                           dtype=np.float32, static_blend="off")])
            return x, False
    return decode_file(container, method="auto", model=model, static_blend="off"), True


def decode_file(container: Path, **options) -> np.ndarray:
    from emcs.tcs.decode import decode_container

    out = container.with_suffix(".decoded.npy")
    decode_container(container, out, device="cpu", force=True, dtype="float32", **options)
    return np.load(out)


def auto_choice(container: Path) -> str:
    """What ``emcs decode`` (``--method auto``) picks here with the shipped models."""
    from emcs.tcs.container import open_container
    from emcs.tcs.decode import plan_methods

    with open_container(container) as c:
        plan, _ = plan_methods(c, "auto")
    kind, name = plan[max(plan)]
    return name if kind == "net" else "gap-tv"


def decode_method(container: Path, method: str, models: dict) -> tuple[np.ndarray, dict]:
    """Frames of a decoder ``method`` (``gap-tv``, a blend or a network) and extra result fields."""
    if method == "gap-tv":
        return decode_file(container, method="gap-tv"), {}
    if method in BLENDS:
        return decode_file(container, method="auto", static_blend=BLENDS[method]), {}
    x, covered = decode_net(container, models[method])
    return x, {"covered": covered}


def encode_plain_twin(case: dict, movie: dict, container: Path, work: Path) -> Path:
    """Encode a losslessly packed case's plain twin; raise unless both containers hold the
    identical measurements. The twin's container."""
    from emcs.tcs.container import open_container

    plain, _ = encode_case(dict(case, key=plain_key(case["key"]), pack=None), movie, work)
    with open_container(container) as a, open_container(plain) as b:
        stops = range(1, a.n_measurements + 1)
        same = a.n_measurements == b.n_measurements and all(
            np.array_equal(ya, yb) for ya, yb in zip(a.blocks(stops), b.blocks(stops), strict=True))
    if not same:
        raise SystemExit(f"{case['key']}: the packed measurements differ from the plain ones")
    return plain


def run_case(case: dict, movie: dict, methods: list[str], models: dict, done: dict, work: Path,
             reuse: dict, verify: list[str]) -> dict:
    """Score ``methods`` on one case. A losslessly packed case copies the decoders' results of
    its plain twin from ``reuse`` (its results), except those in ``verify``: decoded from both
    containers, frames checked identical."""
    from emcs.compare.metrics import score_stack

    B = case["B"]
    clean = movie["clean"][:B]
    scale = float(movie["scale"])
    noisy = movie["counts"][:B].astype(np.float32) * scale
    container, nbytes = encode_case(case, movie, work)
    plain = encode_plain_twin(case, movie, container, work) if case["pack"] else None
    row = dict(done, **{k: v for k, v in case.items() if k != "key"}, **nbytes,
               source=movie["source"], auto_shipped=auto_choice(container),
               raw_psnr_clean=score_stack(noisy, clean)["psnr_mean"])
    res = row.setdefault("results", {})
    for method in methods:
        if method in res:
            continue
        t = time.perf_counter()
        if plain and method in reuse and method not in verify and method not in CODECS:
            res[method] = dict(reuse[method], reused=plain_key(case["key"]))
            continue
        if method in CODECS:
            got, over = codec_at_budget(movie["counts"][:B], method, nbytes["measurement_bytes"])
            if got.decoded is None:
                res[method] = {"failed": got.reason}
                continue
            r = dict(score(got.decoded.astype(np.float32) * scale, clean, noisy), bytes=got.nbytes)
            if over > 1:
                r["over_budget"] = round(over, 3)
        else:
            x, extra = decode_method(container, method, models)
            if plain and method in verify:
                if not np.array_equal(x, decode_method(plain, method, models)[0]):
                    raise SystemExit(f"{case['key']}: {method} decodes the packed container "
                                     "differently from the plain one")
                extra["same_as_plain"] = True
                if method in reuse:
                    extra["plain_cached_psnr_clean"] = reuse[method]["psnr_clean"]
            r = dict(score(x * scale, clean, noisy), **extra)
        res[method] = dict(r, seconds=round(time.perf_counter() - t, 2))
    return row


def run(args) -> None:
    import torch

    torch.set_num_threads(1)
    store = json.loads(args.json.read_text()) if args.json.exists() else {"cases": {}}
    models = {"shipped": str(shipped_model())}
    if args.new_model:
        models["new"] = str(args.new_model)
    methods = [m for group in args.methods for m in (BASELINES if group == "baselines" else (group,))]
    unknown = sorted(set(methods) - {*BASELINES, *models, *BLENDS})
    if unknown:
        raise SystemExit(f"unknown methods {unknown}")
    store["settings"] = dict(size=args.size, seed_base=SEED_BASE, frames=FRAMES,
                             models={k: model_summary(v) for k, v in models.items()})
    args.cache.mkdir(parents=True, exist_ok=True)
    todo = [c for c in cases(args.tables, args.lossless_pack) if not args.kinds or c["kind"] in args.kinds]
    reuse = merge(args.reuse)[0] if args.reuse else {}
    with tempfile.TemporaryDirectory(prefix="tcs_heldout_") as tmp:
        for i, case in enumerate(todo):
            done = store["cases"].get(case["key"], {})
            if all(m in done.get("results", {}) for m in methods):
                continue
            movie = make_movie(case["kind"], case["m"], case["dose"], args.size, args.cache)
            plain = reuse.get(plain_key(case["key"]), {}).get("results", {})
            row = run_case(case, movie, methods, models, done, Path(tmp), plain, args.verify)
            store["cases"][case["key"]] = row
            write_json(args.json, store)
            line = " ".join(f"{m}={v.get('psnr_clean', float('nan')):.2f}"
                            for m, v in row["results"].items())
            print(f"[{i + 1}/{len(todo)}] {case['key']}: {line}", flush=True)


def write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    tmp.replace(path)


def shipped_model() -> Path:
    from emcs.tcs.nets.api import list_models

    return next(i.path for i in list_models() if i.name == "tcs-unfold")


def model_summary(path: str) -> dict:
    import hashlib

    card = json.loads(Path(path).with_suffix(".json").read_text())
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return {"path": path, "file_sha256": digest, "B_range": card.get("B_range"),
            "density_range": card.get("density_range"),
            "steps": card.get("training", {}).get("steps"),
            "cpu_s": card.get("training", {}).get("cpu_s")}


# --------------------------------------------------------------------------- report
def merge(paths: list[Path]) -> tuple[dict, dict]:
    """Every case's results from all files (later files add methods), and the models used."""
    merged: dict = {}
    models: dict = {}
    for path in paths:
        store = json.loads(path.read_text())
        models.update(store.get("settings", {}).get("models", {}))
        for key, row in store["cases"].items():
            have = merged.setdefault(key, {"results": {}})
            have.update({k: v for k, v in row.items() if k != "results"})
            have["results"].update(row["results"])
    return merged, models


def psnr(row: dict, method: str) -> float | None:
    return row["results"].get(method, {}).get("psnr_clean")


def best_codec(row: dict) -> tuple[float | None, bool]:
    """PSNR of the best codec at the case's bytes, and whether it was given more bytes."""
    got = [(psnr(row, c), "over_budget" in row["results"].get(c, {})) for c in CODECS]
    got = [g for g in got if g[0] is not None]
    return max(got) if len(got) == len(CODECS) else (None, False)


def default_psnr(row: dict, state: str, models: dict) -> tuple[float | None, bool]:
    """PSNR of what ``emcs decode`` picks, and whether that is the network: ``shipped`` (the
    recorded auto choice with the shipped models) or ``new`` (the new network where its card
    covers the case, else GAP-TV)."""
    if state == "shipped" or state in BLENDS:
        net = row["auto_shipped"] != "gap-tv"
        return psnr(row, state if net or state in BLENDS else "gap-tv"), net
    else:
        lo_b, hi_b = models["new"]["B_range"]
        lo_d, hi_d = models["new"]["density_range"]
        net = lo_b <= row["B"] <= hi_b and lo_d - 1e-9 <= row["mask_density"] <= hi_d + 1e-9
    return psnr(row, state if net else "gap-tv"), net


def spread(values: list[float]) -> str:
    if not values:
        return ""
    return f"{min(values):+.1f} … {max(values):+.1f} ({np.mean(values):+.1f})"


def margins(rows: list[dict], state: str, models: dict) -> dict | None:
    """Per-case margins of the default decoder in one state over a group of cases."""
    out = {"default": [], "codec": [], "jpegxl": [], "gap": [], "lost": 0, "over": 0, "net": 0}
    for row in rows:
        d, net = default_psnr(row, state, models)
        best, over = best_codec(row)
        gap, jxl = psnr(row, "gap-tv"), psnr(row, "jpegxl")
        if d is None or best is None or gap is None:
            continue
        out["default"].append(d)
        out["codec"].append(d - best)
        out["jpegxl"].append(d - jxl)
        out["gap"].append(d - gap)
        out["lost"] += d < best
        out["over"] += over
        out["net"] += net
    return out if out["default"] else None


def table(cases_: dict, models: dict, group_by, label: str, states=("shipped", "new")) -> str:
    groups: dict = {}
    for row in cases_.values():
        key = group_by(row)
        if key is not None:
            groups.setdefault(key, []).append(row)
    head = f"| {label} | movies | GAP-TV | best codec |"
    for state in states:
        head += (f" {state}: default | − best codec, min … max (mean) | − JPEG XL | − GAP-TV |"
                 " loses to a codec |")
    lines = [head, "|" + "---|" * (4 + 5 * len(states))]
    for key in sorted(groups):
        rows = groups[key]
        gap = [psnr(r, "gap-tv") for r in rows if psnr(r, "gap-tv") is not None]
        codec = [best_codec(r)[0] for r in rows if best_codec(r)[0] is not None]
        line = f"| {key} | {len(rows)} | {np.mean(gap):.2f} | {np.mean(codec):.2f} |"
        for state in states:
            m = margins(rows, state, models) if state != "new" or "new" in models else None
            if m is None:
                line += " | | | | |"
                continue
            who = "net" if m["net"] == len(m["default"]) else (
                "GAP-TV" if m["net"] == 0 else f"net on {m['net']}")
            over = f" ({m['over']} over budget)" if m["over"] else ""
            line += (f" {np.mean(m['default']):.2f} ({who}) | {spread(m['codec'])}{over} |"
                     f" {spread(m['jpegxl'])} | {spread(m['gap'])} | {m['lost']}/{len(m['default'])} |")
        lines.append(line)
    return "\n".join(lines)


def net_table(cases_: dict, *groupings) -> str:
    """Each network minus GAP-TV per group, whether or not its card covers the cases."""
    groups: dict = {}
    for row in cases_.values():
        for group_by in groupings:
            key = group_by(row)
            if key is not None:
                groups.setdefault(key, []).append(row)
    lines = ["| group | cases | shipped − GAP-TV | covered | new − GAP-TV | covered |",
             "|---|---|---|---|---|---|"]
    for key in sorted(groups):
        rows = groups[key]
        line = f"| {key[0]} {key[1]} | {len(rows)} |"
        for state in ("shipped", "new"):
            got = [(psnr(r, state) - psnr(r, "gap-tv"), r["results"][state]["covered"])
                   for r in rows if psnr(r, state) is not None and psnr(r, "gap-tv") is not None]
            line += (f" {spread([g for g, _ in got])} | {sum(c for _, c in got)}/{len(got)} |"
                     if got else " | |")
        lines.append(line)
    return "\n".join(lines)


def report(paths: list[Path]) -> str:
    cases_, models = merge(paths)
    defined = {c["key"] for lossless in (False, True) for c in cases(list(TABLES), lossless)}
    cases_ = {k: r for k, r in cases_.items() if k in defined and "auto_shipped" in r}
    packed = {k: r for k, r in cases_.items() if r.get("pack")}
    cases_ = {k: r for k, r in cases_.items() if not r.get("pack")}
    subset = {(k, m) for k, m, _ in SUBSET}

    def main(r):
        return (r["B"], r["q"]) if standard(r) and r["density"] == 0.5 else None

    def standard(r):
        return r["mask"] == "generated" and "-" not in r["kind"]

    sections = [
        ("B and --quantize (density 0.5, generated masks)", "(B, quantize)", main),
        ("Per kind", "(B, q, kind)", lambda r: main(r) and main(r) + (r["kind"],)),
        ("Per dose (counts/pixel)", "(B, q, dose)", lambda r: main(r) and main(r) + (r["dose"],)),
        ("Mask density (B = 10)", "(density, quantize)",
         lambda r: (r["density"], r["q"]) if standard(r) and r["B"] == 10 and r["q"] < 2
         and (r["kind"], r["m"]) in subset else None),
        ("Explicit structured masks (B = 10, density 0.5)", "(mask, quantize)",
         lambda r: (r["mask"], r["q"]) if r["mask"] != "generated" else None),
        ("Diagnostic: real-image movies, original vs smoothed scene (plain containers)", "(B, kind)",
         lambda r: (r["B"], r["kind"]) if r["B"] >= 10 and r["q"] == 0 and r["density"] == 0.5
         and r["mask"] == "generated" and r["kind"].split("-")[0] in REAL_KINDS else None),
    ]
    out = ["Models: " + json.dumps(models)]
    for title, label, group in sections:
        out += ["", f"## {title}", "", table(cases_, models, group, label)]
    out += ["", "## The networks themselves, also where their cards do not cover the case "
            "(network − GAP-TV, dB)", "",
            net_table(cases_, lambda r: ("B", r["B"]) if standard(r) and r["density"] == 0.5
                      else None, lambda r: ("density", r["density"]) if standard(r) and r["B"] == 10
                      and r["q"] < 2 and (r["kind"], r["m"]) in subset else None,
                      lambda r: ("mask", r["mask"]) if r["mask"] != "generated" else None)]
    for new, old in (("blend", "shipped"), ("drift", "blend")):
        if any(new in r["results"] for r in cases_.values()):
            out += blend_report(cases_, models, main, new, old)
    if packed:
        out += ["", "## Lossless predictive packing: the Q = 0 cases plain and packed "
                "(the default decoder, drift)", "", lossless_table(cases_, packed, models)]
    return "\n".join(out) + "\n"


def lossless_table(plain: dict, packed: dict, models: dict, state: str = "drift") -> str:
    """Per table (main / static) and B: the plain cases beside their losslessly packed twins
    (the same decoded frames; the codecs at the packed container's measurement bytes)."""
    groups: dict = {}
    for key, row in packed.items():
        twin = plain.get(plain_key(key))
        if twin is not None:
            table_ = "static" if row["kind"].endswith("-static") else "main"
            groups.setdefault((table_, row["B"]), []).append((twin, row))
    lines = ["| table | B | movies | measurement bytes plain | packed | plain / packed | default |"
             + " best codec plain | packed | plain: − best codec, min … max (mean) | − JPEG XL |"
             + " − GAP-TV | loses to a codec | packed: − best codec, min … max (mean) | − JPEG XL |"
             + " − GAP-TV | loses to a codec |", "|" + "---|" * 17]
    for (table_, B), pairs in sorted(groups.items()):
        nbytes = [[r["measurement_bytes"] for r in side] for side in zip(*pairs, strict=True)]
        ratio = np.mean([a / b for a, b in zip(*nbytes, strict=True)])
        default = np.mean([default_psnr(r, state, models)[0] or np.nan for r, _ in pairs])
        codec = [np.mean([best_codec(r)[0] or np.nan for r in side]) for side in zip(*pairs, strict=True)]
        line = (f"| {table_} | {B} | {len(pairs)} | {min(nbytes[0])}–{max(nbytes[0])} |"
                f" {min(nbytes[1])}–{max(nbytes[1])} | {ratio:.2f} | {default:.2f} |"
                f" {codec[0]:.2f} | {codec[1]:.2f} |")
        for side in zip(*pairs, strict=True):
            m = margins(list(side), state, models)
            if m is None:
                line += " | | | |"
                continue
            over = f" ({m['over']} over budget)" if m["over"] else ""
            line += (f" {spread(m['codec'])}{over} | {spread(m['jpegxl'])} | {spread(m['gap'])} |"
                     f" {m['lost']}/{len(m['default'])} |")
        lines.append(line)
    return "\n".join(lines)


def blend_report(cases_: dict, models: dict, main, new: str = "blend", old: str = "shipped") -> list[str]:
    """A blend (``new``: ``blend`` or ``drift``) against the decode without it (``old``)."""
    def static(r):
        return (r["B"], r["q"]) if r["kind"].endswith("-static") else None

    out = []
    for title, group in (("main table", main), ("near-static row", static)):
        out += ["", f"## {new} − {old}: {title} (B, quantize)", "",
                table(cases_, models, group, "(B, quantize)", states=(old, new))]
    lines = [f"| movie | dose | cases | {new} − {old}, min … max (mean) | at B = 10 / 20 / 30 (mean) |"
             f" {new} − best codec, at B = 10 / 20 / 30 (mean) | {new} − GAP-TV, at B = 10 / 20 / 30 (mean) |",
             "|---|---|---|---|---|---|---|"]
    movies: dict = {}
    for r in cases_.values():
        if new in r["results"] and old in r["results"] and (main(r) or static(r)):
            movies.setdefault((r["kind"], r["m"], r["dose"]), []).append(r)

    def per_b(pairs):
        return " / ".join(f"{np.mean([d for b, d in pairs if b == B]):+.2f}" for B in (10, 20, 30))

    for (kind, m, dose), rows in sorted(movies.items()):
        ours = [(r["B"], psnr(r, new)) for r in rows]
        diff = [(b, p - default_psnr(r, old, models)[0]) for (b, p), r in zip(ours, rows, strict=True)]
        codec = [(b, p - best_codec(r)[0]) for (b, p), r in zip(ours, rows, strict=True)]
        gap = [(b, p - psnr(r, "gap-tv")) for (b, p), r in zip(ours, rows, strict=True)]
        d = [d for _, d in diff]
        lines.append(f"| {kind} {m} ({rows[0]['source']}) | {dose} | {len(rows)} | "
                     f"{min(d):+.2f} … {max(d):+.2f} ({np.mean(d):+.2f}) | {per_b(diff)} | {per_b(codec)} |"
                     f" {per_b(gap)} |")
    return out + ["", f"## {new} − {old} per movie (dB; all B and quantize steps)", "", "\n".join(lines)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["run", "report"])
    p.add_argument("inputs", nargs="*", type=Path, help="report: result JSON files to merge")
    p.add_argument("--tables", type=lambda s: s.split(","), default=["main"],
                   help=f"run: tables of cases ({', '.join(TABLES)})")
    p.add_argument("--methods", type=lambda s: s.split(","), default=["baselines"],
                   help="run: baselines (gap-tv and the codecs), gap-tv, jpeg, jpeg2000, jpegxl, "
                        "shipped, new, blend, drift")
    p.add_argument("--kinds", type=lambda s: s.split(","), help="run: only these movie kinds")
    p.add_argument("--lossless-pack", action="store_true",
                   help="run: the tables' Q = 0 cases packed losslessly (--pack predictive)")
    p.add_argument("--reuse", type=Path, nargs="+", default=[],
                   help="run, --lossless-pack: result files whose plain cases' decoder scores are copied")
    p.add_argument("--verify", type=lambda s: s.split(","), default=[],
                   help="run, --lossless-pack: decoders run on the packed and the plain container "
                        "(frames must be identical) instead of copied")
    p.add_argument("--new-model", type=Path, help="run: the new network's .safetensors (card beside it)")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "tcs_heldout_movies")
    p.add_argument("--json", type=Path, default=Path("benchmarks/tcs_heldout.json"))
    args = p.parse_args()
    if args.what == "run":
        run(args)
    else:
        print(report(args.inputs))


if __name__ == "__main__":
    main()

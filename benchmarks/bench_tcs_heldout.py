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
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tcs_nets import codec_at_budget, score  # noqa: E402
from tcs_heldout_movies import (  # noqa: E402,F401  (real_movie, DATA: used by tune_static_blend, bench_tcs_int8_quality)
    BASELINES,
    BLENDS,
    CODECS,
    DATA,
    FRAMES,
    SEED_BASE,
    TABLES,
    cases,
    make_movie,
    movie_seed,
    plain_key,
    real_movie,
)
from tcs_heldout_report import merge, report  # noqa: E402


# --------------------------------------------------------------------------- cases
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

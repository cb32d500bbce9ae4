"""Benchmark the neural TCS decoders against GAP-TV and JPEG / JPEG 2000 / JPEG XL.

Quality (held-out simulated movies: data seeds never used in training, and the
"cells" kind that training never saw):

    python benchmarks/bench_tcs_nets.py quality --size 128 --json benchmarks/tcs_nets_quality.json

(several ``quality --json`` runs, e.g. one per B in parallel, or the baselines
(``--only gap-tv,jpeg,jpeg2000,jpegxl``) and the networks (``--only
tcs-unfold,tcs-tcsdl``) run separately, are merged movie by movie by
``report FILE.json ... [--update-cards]``). ``--repeats N`` simulates N
movies per kind and B (data seeds HELDOUT_SEED + 1000 B + 100 r + k).

For each B in 10, 20, 30 and each kind, one movie of B frames is simulated
(clean, then a counting camera at ``--dose`` mean counts/pixel, uint8/uint16
counts as a camera writes them), TCS-encoded with a fresh mask (density 0.5),
and decoded by every shipped model, by GAP-TV (default settings), and by the
three image codecs at equal bytes: the codecs get the bytes that the TCS
measurement occupies in an ``emcs encode`` container (H*W*itemsize of the
smallest integer type holding the measured sums; the container's few hundred
bytes of metadata are not counted). PSNR and SSIM (frame means, data
range of the whole reference stack; emcs.compare.metrics.score_stack) are scored against the clean truth and against
the noisy raw frames.

Speed and memory:

    python benchmarks/bench_tcs_nets.py speed --size 1024 --B 10 --threads 2
    python benchmarks/bench_tcs_nets.py memory --size 4096 --B 10 --threads 2

Both decode one measurement of a generated operator in a fresh subprocess and
report its wall time, CPU seconds (user + system, ``getrusage``), peak resident
memory (``ru_maxrss``) and reconstructed megapixels (B*H*W) per second;
``speed`` warms up on a 64 x 64 crop first, ``memory`` does not. Results and
their conditions: benchmarks/tcs_speed.md.

``--update-cards`` writes the quality means into the models' JSON cards
(the weights' checksum is not affected).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

KINDS = ("cells", "hrtem-particle", "hrtem-sintering", "haadf-crystal", "haadf-particle", "fibres", "lattice")
HELDOUT_SEED = 900_000


def simulate(kind: str, B: int, size: int, dose: float, seed: int):
    """Clean (B,H,W) in [0,1], camera counts (B,H,W) int, scale (counts -> clean units)."""
    from emcs.simulate import sample_movie
    from emcs.simulate.detector import apply_dose

    rng = np.random.default_rng(seed)
    clean = np.asarray(sample_movie(rng, B, (size, size), (kind,)), dtype=np.float32)
    counts = apply_dose(clean, dose, rng=rng)
    scale = float(clean.mean()) / dose
    return clean, counts, scale


def tcs_bytes(y_counts: np.ndarray) -> int:
    """Bytes of the measurement as ``emcs encode`` stores it (narrowed to the smallest int type)."""
    from emcs.tcs.operator import smallest_int_dtype

    dt = smallest_int_dtype(int(y_counts.min()), int(y_counts.max()))
    return int(y_counts.size) * dt.itemsize


def packed_bytes(y_counts: np.ndarray, operator, quantize: float | None = None,
                 packer: str = "jpegxl") -> int:
    """Bytes of the measurement in an ``emcs encode --pack PACKER [--quantize STEP]`` container."""
    from emcs.tcs.container import anscombe_codes, encode_measurement, packed_codec
    from emcs.tcs.operator import smallest_int_dtype

    if quantize:
        y_counts = anscombe_codes(y_counts, quantize)
    dt = smallest_int_dtype(int(y_counts.min()), int(y_counts.max()))
    codec = packed_codec(packer, dt)
    S = operator.open_count() if codec == "mask-predictive" else None
    return sum(len(encode_measurement(y.astype(dt), codec, S, quantize)) for y in y_counts)


def codec_at_budget(counts, codec: str, budget: int):
    """``encode_at_budget``; where even the codec's lowest setting is too big, the budget grows
    by 25 % steps until it fits (generous to the codec; the result records ``over_budget``)."""
    from emcs.compare.codecs import encode_at_budget

    grown = budget
    while True:
        r = encode_at_budget(counts, codec, grown)
        if r.decoded is not None or grown > 64 * budget:
            return r, grown / budget
        grown = int(grown * 1.25) + 1


def score(x, clean, noisy) -> dict:
    from emcs.compare.metrics import score_stack

    a, b = score_stack(x, clean), score_stack(x, noisy)
    return {
        "psnr_clean": a["psnr_mean"], "ssim_clean": a["ssim_mean"],
        "psnr_raw": b["psnr_mean"], "ssim_raw": b["ssim_mean"],
    }


def quality(args) -> dict:
    import torch

    from emcs.compare.codecs import CODECS
    from emcs.tcs.container import anscombe_codes, anscombe_values
    from emcs.tcs.decoders import GAP_TV, get_decoder
    from emcs.tcs.nets.api import list_models
    from emcs.tcs.operator import TcsOperator

    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    only = set(args.only) if args.only else None

    def wanted(name: str) -> bool:
        return only is None or name in only

    models = [m for m in list_models() if wanted(m.name)]
    rows = []
    for B in args.B:
        for r_, (k, kind) in ((r_, kk) for r_ in range(args.repeats) for kk in enumerate(args.kinds)):
            seed = HELDOUT_SEED + 1000 * B + 100 * r_ + k
            clean, counts, scale = simulate(kind, B, args.size, args.dose, seed)
            noisy = counts.astype(np.float32) * scale
            op = TcsOperator.generated(seed, B, (args.size, args.size), 0.5)
            y_counts = op.encode(counts).astype(np.int64)[None]
            q = args.quantize
            if q:  # what the decoder gets back from an --quantize container
                y = anscombe_values(anscombe_codes(y_counts, q), q) * scale
            else:
                y = y_counts.astype(np.float32) * scale
            pre = "predictive-" if args.packer == "predictive" else ""
            budget = packed_bytes(y_counts, op, q, args.packer) if (args.pack or q) else tcs_bytes(y_counts)
            tag = f" [quantized {q:g}]" if q else ""
            res = {}
            for info in models:
                for ens in args.ensemble:
                    t = time.perf_counter()
                    x = get_decoder(info.name, device=cpu, ensemble=ens)(y, op)[0]
                    name = (info.name if ens == 1 else f"{info.name} (ensemble {ens})") + tag
                    res[name] = dict(score(x, clean, noisy), seconds=time.perf_counter() - t)
            if wanted("gap-tv"):
                t = time.perf_counter()
                x = get_decoder(GAP_TV)(y, op)[0]
                res["gap-tv" + tag] = dict(score(x, clean, noisy), seconds=time.perf_counter() - t)
            for codec in (c for c in CODECS if wanted(c)):
                r, over = codec_at_budget(counts, codec, budget)
                packed = "predictive" if pre else "packed"
                name = (f"{codec} @ {pre}quantized-{q:g} bytes" if q else
                        f"{codec} @ {packed} bytes" if args.pack else codec)
                if r.decoded is None:
                    res[name] = {"failed": r.reason}
                    continue
                res[name] = dict(score(r.decoded.astype(np.float32) * scale, clean, noisy), bytes=r.nbytes)
                if over > 1:
                    res[name]["over_budget"] = round(over, 3)
            key = pre.replace("-", "_") + ("quantized_bytes" if q else "packed_bytes" if args.pack else "bytes")
            rows.append({"B": B, "kind": kind, "seed": seed, key: budget, "results": res})
            line = "  ".join(f"{m}={v.get('psnr_clean', float('nan')):.2f}" for m, v in res.items())
            print(f"B={B} {kind:16s} {line}", flush=True)
    return {"rows": rows, "settings": vars(args)}


def summarize(result: dict) -> dict:
    """Mean metrics per B and method."""
    out: dict = {}
    for row in result["rows"]:
        for method, v in row["results"].items():
            if "psnr_clean" not in v:
                continue
            d = out.setdefault(str(row["B"]), {}).setdefault(method, {})
            for key in ("psnr_clean", "ssim_clean", "psnr_raw", "ssim_raw"):
                d.setdefault(key, []).append(v[key])
            d.setdefault("over_budget", []).append(v.get("over_budget", 1.0) > 1)
    summary: dict = {}
    for B, ms in out.items():
        for m, d in ms.items():
            over = int(sum(d.pop("over_budget")))
            summary.setdefault(B, {})[m] = {k: round(float(np.mean(v)), 3) for k, v in d.items()}
            if over:  # movies where the codec could not get down to the budget (it got more bytes)
                summary[B][m]["movies_over_budget"] = over
    return summary


def markdown(summary: dict) -> str:
    lines = []
    for B, ms in summary.items():
        lines.append(f"\n**B = {B}** (mean over kinds)\n")
        lines.append("| method | PSNR vs clean | SSIM vs clean | PSNR vs raw | SSIM vs raw |")
        lines.append("|---|---|---|---|---|")
        for m, d in sorted(ms.items(), key=lambda kv: -kv[1]["psnr_clean"]):
            over = (f" ({d['movies_over_budget']} movies over budget)"
                    if d.get("movies_over_budget") else "")
            lines.append(f"| {m}{over} | {d['psnr_clean']:.2f} | {d['ssim_clean']:.3f} | "
                         f"{d['psnr_raw']:.2f} | {d['ssim_raw']:.3f} |")
    return "\n".join(lines)


def targets(summary: dict, default: str = "tcs-unfold") -> str:
    """The issue's bars: PSNR (vs clean) of ``default`` minus each other method, per B."""
    others = sorted({m for ms in summary.values() for m in ms if m != default})
    lines = ["\n**PSNR vs clean of " + default + " minus each method (dB)**\n",
             "| B | " + " | ".join(others) + " |", "|---" * (len(others) + 1) + "|"]
    for B, ms in summary.items():
        if default not in ms:
            continue
        ref = ms[default]["psnr_clean"]
        cells = [f"{ref - ms[m]['psnr_clean']:+.2f}" if m in ms else "" for m in others]
        lines.append(f"| {B} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bars(summary: dict, default: str = "tcs-unfold") -> str:
    """The issue's bars per container variant: ``default`` minus GAP-TV and each codec, where the
    network decodes that container and the codecs get its bytes."""
    variants = [("plain (`emcs encode`)", "", "{c}"),
                ("lossless packed (`--pack jpegxl`)", "", "{c} @ packed bytes"),
                ("lossless packed (`--pack predictive`)", "", "{c} @ predictive bytes")]
    steps = sorted({m.split("[quantized ")[1].rstrip("]") for ms in summary.values() for m in ms
                    if m.startswith(default + " [quantized ")}, key=float)
    for q in steps:
        variants += [(f"quantized (`--pack jpegxl --quantize {q}`)", f" [quantized {q}]", f"{{c}} @ quantized-{q} bytes"),
                     (f"quantized (`--quantize {q}`, predictive)", f" [quantized {q}]",
                      f"{{c}} @ predictive-quantized-{q} bytes")]
    lines = [f"\n**{default} minus GAP-TV and the codecs at the container's bytes (dB, PSNR vs clean)**\n",
             "| B | container | " + default + " | - GAP-TV | - JPEG | - JPEG 2000 | - JPEG XL |",
             "|---|---|---|---|---|---|---|"]
    for B, ms in summary.items():
        for label, tag, codec in variants:
            net = ms.get(default + tag)
            if net is None:
                continue
            cells = []
            for m in ["gap-tv" + tag] + [codec.format(c=c) for c in ("jpeg", "jpeg2000", "jpegxl")]:
                d = ms.get(m)
                over = "*" if d and d.get("movies_over_budget") else ""
                cells.append(f"{net['psnr_clean'] - d['psnr_clean']:+.2f}{over}" if d else "")
            lines.append(f"| {B} | {label} | {net['psnr_clean']:.2f} | " + " | ".join(cells) + " |")
    lines.append("\n(* the codec could not get down to the budget on some movies and was given more bytes there)")
    return "\n".join(lines)


def update_cards(summary: dict, settings: dict, command: str) -> None:
    from emcs.tcs.nets.train import DESCRIPTIONS

    from emcs.tcs.nets import ARCHITECTURES
    from emcs.tcs.nets.api import list_models

    short_names = {arch: short for short, arch in ARCHITECTURES.items()}

    for info in list_models():
        cpath = info.path.with_suffix(".json")
        card = json.loads(cpath.read_text())
        per_B = {}
        for B, ms in summary.items():
            if info.name in ms:
                per_B[f"B={B}"] = ms  # this model, the other TCS models, GAP-TV and the codecs
        card.setdefault("description", DESCRIPTIONS[short_names[card["architecture"]]])
        card["metrics"] = {
            "held_out": per_B,
            "data": f"held-out simulated movies ({settings.get('repeats', 1)} per kind and B): "
                    f"kinds {settings['kinds']} ('cells' never seen in "
                    f"training; others with unseen seeds), {settings['size']}x{settings['size']}, "
                    f"dose {settings['dose']} counts/pixel, mask density 0.5; codecs at the TCS "
                    "measurement's bytes",
            "command": command,
            "machine": "2-core CPU, no GPU",
        }
        cpath.write_text(json.dumps(card, indent=2) + "\n")


#: one decode of a (S, S), B measurement in a fresh process: prints one JSON line with the wall
#: time, CPU seconds (user + system, getrusage) and peak resident memory of that process
_DECODE_RUN = """
import json, resource, time, numpy as np, torch
torch.set_num_threads({threads})
from emcs.tcs.nets.api import decode_measurements, list_models
from emcs.tcs.operator import TcsOperator
{cheap}
def usage():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_maxrss / 1024
B, S = {B}, {size}
info = [i for i in list_models() if i.name == {model!r}][0]
op = TcsOperator.generated(1, B, (S, S))
masks = op.masks()
y = np.zeros((1, S, S), np.float32)
for b in range(B):  # a measurement of frames that are 0.5 everywhere
    y[0] += masks[b] * np.float32(0.5)
options = {options}
if {warm}:
    decode_measurements(y[:, :64, :64], masks[:, :64, :64], info, device="cpu", **options)
cpu0, base = usage()
t = time.perf_counter()
out = decode_measurements(y, op, info, device="cpu", **options)
wall = time.perf_counter() - t
cpu, peak = usage()
print(json.dumps(dict(model=info.name, B=B, size=S, threads={threads}, wall_s=round(wall, 2),
                      cpu_s=round(cpu - cpu0, 2), peak_rss_mib=round(peak), rss_before_mib=round(base),
                      output_mib=round(out.nbytes / 2**20), mpix_per_s=round(B * S * S / wall / 1e6, 3),
                      options=options)))
"""

#: ``--cheap-net``: the network replaced by a pointwise stand-in (Ybar in every frame)
_CHEAP_NET = """
import emcs.tcs.nets.api as api
class Cheap(torch.nn.Module):
    def forward(self, y, m):
        return (y / m.sum(1).clamp_min(1))[:, None] * torch.ones_like(m)
api.load = lambda info, dev: Cheap()
"""


def decode_run(args, model: str, B: int, warm: bool) -> dict:
    """Decode one measurement in a fresh subprocess (see ``_DECODE_RUN``); its JSON result."""
    options = {k: v for k, v in (("tile", args.tile), ("overlap", args.overlap)) if v is not None}
    code = _DECODE_RUN.format(threads=args.threads, cheap=_CHEAP_NET if args.cheap_net else "", B=B,
                              size=args.size, model=model, options=options, warm=warm)
    import emcs

    # run from the folder holding the emcs imported here, so that `python -c` imports the same one
    # (its first path entry is the working directory)
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                          cwd=Path(emcs.__file__).resolve().parent.parent)
    return json.loads(done.stdout.strip().splitlines()[-1])


def speed(args) -> None:
    """Wall time, CPU seconds and reconstructed Mpixel/s of one decode (after a 64 x 64 warm-up)."""
    from emcs.tcs.nets.api import list_models

    models = [args.model] if args.model != "all" else [m.name for m in list_models()]
    for B in args.B:
        for model in models:
            r = decode_run(args, model, B, warm=True)
            print(f"{model} B={B} {args.size}x{args.size}: {r['wall_s']:.2f} s wall, {r['cpu_s']:.2f} CPU-s, "
                  f"{r['mpix_per_s']:.3f} reconstructed Mpixel/s, peak RSS {r['peak_rss_mib']} MiB "
                  f"({args.threads} threads) {json.dumps(r)}", flush=True)


def memory(args) -> None:
    """Peak RSS of one decode in a fresh subprocess (no warm-up).

    With ``--cheap-net`` the network is replaced by a pointwise stand-in
    (Ybar in every frame), which measures the buffers and the tiling machinery
    of a large frame without the CPU time of the convolutions; the activations
    of one real tile are measured by a real run at ``--size`` = the tile edge.
    """
    r = decode_run(args, args.model, args.B[0], warm=False)
    print(f"{r['model']} B={r['B']} {args.size}x{args.size}: peak RSS {r['peak_rss_mib']} MiB "
          f"(before decoding: {r['rss_before_mib']} MiB), output {r['output_mib']} MiB, "
          f"{r['wall_s']:.1f} s, {r['cpu_s']:.1f} CPU-s {json.dumps(r)}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["quality", "report", "speed", "memory"])
    p.add_argument("inputs", nargs="*", type=Path, help="report: quality JSON files to merge")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--B", type=lambda s: [int(v) for v in s.split(",")], default=[10, 20, 30])
    p.add_argument("--kinds", type=lambda s: s.split(","), default=list(KINDS))
    p.add_argument("--dose", type=float, default=50.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--model", default="tcs-unfold", help="speed, memory: the model ('all': every one, speed)")
    p.add_argument("--tile", type=int, help="speed, memory: tile edge (default: decode_measurements')")
    p.add_argument("--overlap", type=int, help="speed, memory: tile overlap (default: decode_measurements')")
    p.add_argument("--only", type=lambda s: s.split(","), help="quality: methods to run (default all)")
    p.add_argument("--repeats", type=int, default=1, help="quality: movies per kind and B")
    p.add_argument("--pack", action="store_true",
                   help="quality: give the codecs the bytes of the losslessly packed measurement "
                        "(emcs encode --pack jpegxl) instead of the plain one")
    p.add_argument("--packer", choices=["jpegxl", "predictive"], default="predictive",
                   help="quality: the --pack of the containers whose bytes the codecs get with --pack "
                        "or --quantize (default predictive, the smallest)")
    p.add_argument("--quantize", type=float, default=None, metavar="STEP",
                   help="quality: decode what an `emcs encode --pack PACKER --quantize STEP` container "
                        "holds and give the codecs its bytes (a codec that cannot get that small is "
                        "given 25 %% more bytes at a time until it fits, marked over_budget)")
    p.add_argument("--ensemble", type=lambda s: [int(v) for v in s.split(",")], default=[1],
                   help="quality: self-ensemble sizes to run for each network, e.g. 1,8")
    p.add_argument("--json", type=Path)
    p.add_argument("--cheap-net", action="store_true", help="memory: pointwise stand-in network")
    p.add_argument("--update-cards", action="store_true")
    args = p.parse_args()
    if args.what == "quality":
        result = quality(args)
        summary = summarize(result)
        result["summary"] = summary
        print(markdown(summary))
        command = "python " + " ".join(sys.argv)
        if args.json:
            args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
        if args.update_cards:
            update_cards(summary, {k: v for k, v in vars(args).items() if k != "json"}, command)
    elif args.what == "report":
        parts = [json.loads(f.read_text()) for f in args.inputs]
        merged: dict = {}  # the results of one movie (B, kind, seed) from every run
        for part in parts:
            for r in part["rows"]:
                key = (r["B"], r["kind"], r["seed"])
                row = merged.setdefault(key, dict(r, results={}))
                row.update({k: v for k, v in r.items() if k.endswith("bytes")})
                row["results"].update(r["results"])
        result = {"rows": list(merged.values()), "settings": parts[0]["settings"]}
        summary = summarize(result)
        print(markdown(summary))
        print(targets(summary))
        print(bars(summary))
        if args.update_cards:
            settings = dict(result["settings"], B=sorted({r["B"] for r in result["rows"]}))
            update_cards(summary, settings, "python " + " ".join(sys.argv))
    elif args.what == "speed":
        speed(args)
    else:
        memory(args)


if __name__ == "__main__":
    main()

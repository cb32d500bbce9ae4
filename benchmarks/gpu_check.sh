#!/usr/bin/env bash
# GPU check of the networks: run each on CUDA, compare with the same run on the CPU, print speed.
#
#   benchmarks/gpu_check.sh             # on a CUDA machine: under five minutes
#   benchmarks/gpu_check.sh --dry-run   # anywhere: the same logic with the CPU as the "GPU", tiny sizes
#
# What it runs (the shipped models, PYTHONPATH or the installed emcs):
#   - TCS decode, tcs-unfold and tcs-tcsdl: float32, float16 and bfloat16 autocast
#     (emcs.tcs.nets.api.decode_measurements(precision=...)), on a simulated held-out movie
#   - DLSS supersample (emcs.dlss.supersample.supersample_frame, factor 4)
#   - SIM network reconstruction: wide-field (emcs.sim.recon.net_frame) and raw-input
#     (emcs.sim.recon.raw_net_frame, vdlsim-raw: pattern estimation on the CPU, network on the GPU)
# Each output is compared with the CPU float32 run of the same input. Tolerances (PSNR of the
# GPU output against the CPU output, peak = the CPU output's range): float32 >= 50 dB (cuDNN may
# use TF32 for float32 convolutions), float16 >= 40 dB, bfloat16 >= 32 dB. Then the GPU alone
# decodes/supersamples/reconstructs a larger frame and prints Mpixel/s (output pixels) and
# frames/s (output frames). Exit status 1 if any comparison fails, 2 without a GPU (no --dry-run).
# Record the printed table in benchmarks/gpu.md.
set -euo pipefail
cd "$(dirname "$0")/.."
dry=0
case "${1:-}" in
    --dry-run) dry=1 ;;
    "") ;;
    *) echo "usage: $0 [--dry-run]" >&2; exit 64 ;;
esac
exec python - "$dry" <<'PY'
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, "benchmarks")
from bench_tcs_nets import HELDOUT_SEED, simulate  # noqa: E402

DRY = sys.argv[1] == "1"
if not DRY and not torch.cuda.is_available():
    print("gpu_check: no CUDA GPU visible (run with --dry-run to check the logic on the CPU)")
    sys.exit(2)
GPU = torch.device("cpu" if DRY else "cuda")
CPU = torch.device("cpu")
torch.set_num_threads(os.cpu_count() or 1)
#: (compare size, speed size) per check; the dry run uses tiny frames
SIZES = {"tcs": (32, 48), "dlss": (48, 64), "sim": (32, 48)} if DRY else \
        {"tcs": (512, 2048), "dlss": (512, 4096), "sim": (256, 2048)}
MIN_PSNR = {"float32": 50.0, "float16": 40.0, "bfloat16": 32.0}
rows, failed = [], []


def sync():
    if GPU.type == "cuda":
        torch.cuda.synchronize()


def timed(fn):
    """(result, seconds) of fn() on the GPU, after one warm-up call."""
    fn()
    sync()
    t = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - t


def agree(name, precision, got, ref):
    """PSNR of got against ref (peak: ref's range), checked against the precision's bar."""
    peak = float(ref.max() - ref.min()) or 1.0
    mse = float(np.mean((got.astype(np.float64) - ref) ** 2))
    psnr = float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)
    ok = psnr >= MIN_PSNR[precision]
    if not ok:
        failed.append(f"{name} {precision}")
    return psnr, float(np.abs(got - ref).max()) / peak, ok


def report(name, precision, shape, psnr, err, ok, seconds, frames, pixels):
    rows.append(f"| {name} | {precision} | {shape} | {psnr:.1f} dB | {err:.1e} | {'ok' if ok else 'FAIL'} "
                f"| {pixels / seconds / 1e6:.3g} | {frames / seconds:.3g} |")
    print(rows[-1], flush=True)


def check_tcs():
    from emcs.tcs.nets.api import decode_measurements, list_models
    from emcs.tcs.operator import TcsOperator

    small, big = SIZES["tcs"]
    B = 10
    inputs = {}
    for size in (small, big):
        seed = HELDOUT_SEED + 1000 * B + size
        _, counts, scale = simulate("cells", B, size, 50.0, seed)
        op = TcsOperator.generated(seed, B, (size, size), 0.5)
        inputs[size] = (op.encode(counts).astype(np.float32)[None] * scale, op)
    for info in list_models():
        y, op = inputs[small]
        ref = decode_measurements(y, op, info, CPU, precision="float32")[0]
        for precision in ("float32", "float16", "bfloat16"):
            got = decode_measurements(y, op, info, GPU, precision=precision)[0]
            psnr, err, ok = agree(info.name, precision, got, ref)
            yb, opb = inputs[big]
            _, dt = timed(lambda: decode_measurements(yb, opb, info, GPU, precision=precision))
            report(f"decode {info.name}", precision, f"{B}x{big}x{big}", psnr, err, ok, dt, B, B * big * big)


def check_dlss():
    from emcs.dlss.sampling import subsample
    from emcs.dlss.supersample import load_default_model, supersample_frame
    from emcs.simulate.textures import degrade, stem_texture

    small, big = SIZES["dlss"]
    factor = 4
    cpu_model, _ = load_default_model(device=CPU)
    gpu_model, _ = load_default_model(device=GPU)
    frames = {s: subsample(degrade(np.random.default_rng(s), stem_texture(np.random.default_rng(s), s))[0],
                           factor) for s in (small, big)}
    ref = supersample_frame(frames[small], factor, (small, small), "net", cpu_model, CPU)
    got = supersample_frame(frames[small], factor, (small, small), "net", gpu_model, GPU)
    psnr, err, ok = agree("supersample", "float32", got, ref)
    _, dt = timed(lambda: supersample_frame(frames[big], factor, (big, big), "net", gpu_model, GPU))
    report("supersample x4", "float32", f"{big}x{big}", psnr, err, ok, dt, 1, big * big)


def check_sim():
    from emcs.sim.recon import load_network, net_frame

    small, big = SIZES["sim"]
    cpu_model, _ = load_network(device=CPU)
    gpu_model, _ = load_network(device=GPU)
    rng = np.random.default_rng(HELDOUT_SEED)
    frames = {s: np.abs(rng.normal(100, 30, (s, s))).astype(np.float32) for s in (small, big)}
    ref = net_frame(cpu_model, frames[small], CPU)
    got = net_frame(gpu_model, frames[small], GPU)
    psnr, err, ok = agree("sim-recon", "float32", got, ref)
    _, dt = timed(lambda: net_frame(gpu_model, frames[big], GPU))
    report("sim-recon (network)", "float32", f"{big}x{big} -> {2 * big}x{2 * big}", psnr, err, ok, dt, 1,
           4 * big * big)


def check_sim_raw():
    from emcs.sim.otf import Optics
    from emcs.sim.recon import load_network, raw_net_frame
    from emcs.simulate.fluorescence import simulate_movie

    small, big = SIZES["sim"]
    optics = Optics()
    cpu_model, _ = load_network(device=CPU, input_kind="raw")
    gpu_model, _ = load_network(device=GPU, input_kind="raw")
    raw = {s: simulate_movie(size=(s, s), seed=HELDOUT_SEED, counts=200.0, optics=optics).raw
           .reshape(3, 3, s, s).astype(np.float32) for s in (small, big)}
    ref, patterns, _ = raw_net_frame(cpu_model, raw[small], optics, CPU)
    got, _, _ = raw_net_frame(gpu_model, raw[small], optics, GPU, patterns=patterns)
    psnr, err, ok = agree("sim-recon raw", "float32", got, ref)
    _, dt = timed(lambda: raw_net_frame(gpu_model, raw[big], optics, GPU))
    report("sim-recon (raw network)", "float32", f"9x{big}x{big} -> {2 * big}x{2 * big}", psnr, err, ok,
           dt, 1, 4 * big * big)


t0 = time.perf_counter()
name = "CPU (dry run)" if DRY else torch.cuda.get_device_name(GPU)
print(f"gpu_check on {name}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads for the references")
print("| check | precision | output | PSNR vs CPU | max abs err / range | bar | Mpixel/s | frames/s |")
print("|---|---|---|---|---|---|---|---|")
check_tcs()
check_dlss()
check_sim()
check_sim_raw()
print(f"total {time.perf_counter() - t0:.0f} s; " + (f"FAILED: {', '.join(failed)}" if failed else "all within tolerance"))
sys.exit(1 if failed else 0)
PY

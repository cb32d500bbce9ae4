"""GPU check of the networks: each on CUDA against the same run on the CPU, and speed.

Run through ``benchmarks/gpu_check.sh`` (see there and ``benchmarks/gpu.md``). Every check runs
even when an earlier one fails: a failure prints its traceback and counts as FAIL, so one run on
a lent GPU reports everything.
"""
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_tcs_nets import HELDOUT_SEED, simulate  # noqa: E402

DRY = "--dry-run" in sys.argv[1:]
ROOT = Path(__file__).resolve().parent.parent
if not DRY and not torch.cuda.is_available():
    print("gpu_check: no CUDA GPU visible (run with --dry-run to check the logic on the CPU)")
    sys.exit(2)
GPU = torch.device("cpu" if DRY else "cuda")
CPU = torch.device("cpu")
torch.set_num_threads(os.cpu_count() or 1)
#: (compare size, speed sizes) per check; the dry run uses tiny frames
SIZES = {"tcs": (32, (48,)), "dlss": (48, (64,)), "sim": (32, (48,)), "sim_raw": (32, (48,)), "e2e": (48, 64)} \
    if DRY else {"tcs": (512, (2048,)), "dlss": (512, (512, 4096)), "sim": (256, (512, 2048)),
                 "sim_raw": (256, (512,)), "e2e": (1024, 4096)}
#: GPU_CHECK_ONLY=sim_raw,decode_cli runs only those checks (the names after check_)
ONLY = [n for n in os.environ.get("GPU_CHECK_ONLY", "").split(",") if n]
MIN_PSNR = {"float32": 50.0, "float16": 40.0, "bfloat16": 32.0}
rows, failed = [], []


def sync():
    if GPU.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, *args, **kwargs):
    """(result, seconds) of fn(*args, **kwargs) on the GPU, after one warm-up call."""
    fn(*args, **kwargs)
    sync()
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    sync()
    return out, time.perf_counter() - t


def agree(name, precision, got, ref):
    """PSNR of got against ref (peak: ref's range), checked against the precision's bar."""
    peak = float(ref.max() - ref.min()) or 1.0
    mse = float(np.mean((got.astype(np.float64) - ref) ** 2))
    psnr = float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)
    ok = bool(np.isfinite(got).all()) and psnr >= MIN_PSNR[precision]
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

    small, bigs = SIZES["tcs"]
    for info in list_models():
        b0, b1 = info.card["B_range"]
        B = 10 if b0 <= 10 <= b1 else b1
        inputs = {}
        for size in (small, *bigs):
            seed = HELDOUT_SEED + 1000 * B + size
            _, counts, scale = simulate("cells", B, size, 50.0, seed)
            op = TcsOperator.generated(seed, B, (size, size), 0.5)
            inputs[size] = (op.encode(counts).astype(np.float32)[None] * scale, op)
        y, op = inputs[small]
        ref = decode_measurements(y, op, info, CPU, precision="float32")[0]
        for precision in ("float32", "float16", "bfloat16"):
            got = decode_measurements(y, op, info, GPU, precision=precision)[0]
            psnr, err, ok = agree(f"decode {info.name}", precision, got, ref)
            for big in bigs:
                yb, opb = inputs[big]
                _, dt = timed(decode_measurements, yb, opb, info, GPU, precision=precision)
                report(f"decode {info.name}", precision, f"{B}x{big}x{big}", psnr, err, ok, dt, B,
                       B * big * big)


def check_dlss():
    from emcs.dlss.sampling import subsample
    from emcs.dlss.supersample import load_default_model, supersample_frame
    from emcs.simulate.textures import degrade, stem_texture

    small, bigs = SIZES["dlss"]
    factor = 4
    cpu_model, _ = load_default_model(device=CPU)
    gpu_model, _ = load_default_model(device=GPU)
    frames = {s: subsample(degrade(np.random.default_rng(s), stem_texture(np.random.default_rng(s), s))[0],
                           factor) for s in {small, *bigs}}
    ref = supersample_frame(frames[small], factor, (small, small), "net", cpu_model, CPU)
    got = supersample_frame(frames[small], factor, (small, small), "net", gpu_model, GPU)
    psnr, err, ok = agree("supersample", "float32", got, ref)
    for big in bigs:
        _, dt = timed(supersample_frame, frames[big], factor, (big, big), "net", gpu_model, GPU)
        report("supersample x4", "float32", f"{big}x{big}", psnr, err, ok, dt, 1, big * big)


def check_sim():
    from emcs.sim.recon import load_network, net_frame

    small, bigs = SIZES["sim"]
    cpu_model, _ = load_network(device=CPU)
    gpu_model, _ = load_network(device=GPU)
    rng = np.random.default_rng(HELDOUT_SEED)
    frames = {s: np.abs(rng.normal(100, 30, (s, s))).astype(np.float32) for s in (small, *bigs)}
    ref = net_frame(cpu_model, frames[small], CPU)
    got = net_frame(gpu_model, frames[small], GPU)
    psnr, err, ok = agree("sim-recon", "float32", got, ref)
    for big in bigs:
        _, dt = timed(net_frame, gpu_model, frames[big], GPU)
        report("sim-recon (network)", "float32", f"{big}x{big} -> {2 * big}x{2 * big}", psnr, err, ok, dt, 1,
               4 * big * big)


def check_sim_raw():
    from emcs.sim.otf import Optics
    from emcs.sim.recon import load_network, raw_net_frame
    from emcs.simulate.fluorescence import simulate_movie

    small, bigs = SIZES["sim_raw"]
    optics = Optics()
    cpu_model, _ = load_network(device=CPU, input_kind="raw")
    gpu_model, _ = load_network(device=GPU, input_kind="raw")
    raw = {s: simulate_movie(size=(s, s), seed=HELDOUT_SEED, counts=200.0, optics=optics).raw
           .reshape(3, 3, s, s).astype(np.float32) for s in (small, *bigs)}
    ref, patterns, _ = raw_net_frame(cpu_model, raw[small], optics, CPU)
    got, _, _ = raw_net_frame(gpu_model, raw[small], optics, GPU, patterns=patterns)
    psnr, err, ok = agree("sim-recon raw", "float32", got, ref)
    for big in bigs:
        out = f"9x{big}x{big} -> {2 * big}x{2 * big}"
        (_, pats, _), dt = timed(raw_net_frame, gpu_model, raw[big], optics, GPU)
        report("sim-recon (raw network, patterns estimated on the CPU)", "float32", out, psnr, err, ok, dt, 1,
               4 * big * big)
        _, dt = timed(raw_net_frame, gpu_model, raw[big], optics, GPU, patterns=pats)
        report("sim-recon (raw network, patterns given)", "float32", out, psnr, err, ok, dt, 1, 4 * big * big)


#: runs the CLI in a child process and prints its peak RSS (and GPU memory) on stderr at exit; with
#: GPU_CHECK_PHASES=1 also the time spent in the decode's phases (cProfile, main thread; the blend's
#: worker threads count as the blend's wall time): start = pick_device (torch and CUDA start-up),
#: network = decode_measurements, blend, write = the output writer
CLI = ("import atexit, cProfile, os, pstats, resource, sys\n"
       "PHASES = {'pick_device': 'start', 'decode_measurements': 'network', 'blend': 'blend', 'write': 'write'}\n"
       "prof = cProfile.Profile() if os.environ.get('GPU_CHECK_PHASES') else None\n"
       "def _phases():\n"
       "    if prof is None:\n"
       "        return\n"
       "    prof.disable()\n"
       "    acc = {}\n"
       "    for (f, _, name), v in pstats.Stats(prof).stats.items():\n"
       "        if name in PHASES and os.sep + 'emcs' + os.sep in f:\n"
       "            acc[PHASES[name]] = acc.get(PHASES[name], 0.0) + v[3]\n"
       "    sys.stderr.write('PHASES ' + ' '.join(f'{k}={v:.1f}s' for k, v in sorted(acc.items())) + '\\n')\n"
       "atexit.register(_phases)\n"
       "def _peak():\n"
       "    t = sys.modules.get('torch')\n"
       "    g = t.cuda.max_memory_allocated() / 2**20 if t is not None and t.cuda.is_initialized() else 0\n"
       "    sys.stderr.write(f'PEAK rss_MiB={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} '\n"
       "                     f'gpu_MiB={g:.0f}\\n')\n"
       "atexit.register(_peak)\n"
       "sys.argv[0] = 'emcs'\n"
       "if prof is not None:\n"
       "    prof.enable()\n"
       "from emcs.cli import main\n"
       "main()\n")


def emcs(*args, phases: bool = False):
    """(seconds, peak and phase lines) of one `emcs ...` run in a child process; raises on a
    non-zero exit."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    if phases:
        env["GPU_CHECK_PHASES"] = "1"
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CLI, *map(str, args)], capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"emcs {' '.join(map(str, args))}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    lines = [ln.split(" ", 1)[1] for ln in proc.stderr.splitlines() if ln.startswith(("PEAK ", "PHASES "))]
    return dt, "; ".join(lines)


def check_decode_cli():
    """`emcs decode` end to end (container in, stack out, blend included) on the GPU and the CPU."""
    import tifffile

    small, big = SIZES["e2e"]
    B = 10
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # a simulated movie tiled up to the size: the speed does not depend on the content
        _, counts, _ = simulate("cells", B, small, 50.0, HELDOUT_SEED + 7)
        for size in (small, big):
            reps = -(-size // small)
            movie = np.tile(counts, (1, reps, reps))[:, :size, :size].astype(np.uint16)
            np.save(tmp / f"m{size}.npy", movie)
            emcs("encode", tmp / f"m{size}.npy", "-o", tmp / f"m{size}.npz", "-B", B, "--seed", 1, "-q")
        # the whole pipeline in float32 on both devices: the same frames up to float32/TF32 rounding
        outs = {}
        for dev in ("cpu", "cuda"):
            device = "cpu" if DRY else dev
            emcs("decode", tmp / f"m{small}.npz", "-o", tmp / f"{dev}.tif", "--device", device,
                 "--precision", "float32", "--force", "-q")
            outs[dev] = tifffile.imread(tmp / f"{dev}.tif").astype(np.float64)
        psnr, err, ok = agree("emcs decode", "float32", outs["cuda"].astype(np.float32), outs["cpu"])
        # the default decode (auto precision: float16 on a GPU) at the large size
        device = "cpu" if DRY else "cuda"
        emcs("decode", tmp / f"m{small}.npz", "-o", tmp / "warm.tif", "--device", device, "--force", "-q")
        dt, peak = emcs("decode", tmp / f"m{big}.npz", "-o", tmp / "big.tif", "--device", device, "--force",
                        "-q", phases=True)
        report(f"emcs decode, default, whole process ({peak})", "auto", f"{B}x{big}x{big}", psnr, err, ok,
               dt, B, B * big * big)


t0 = time.perf_counter()
name = "CPU (dry run)" if DRY else torch.cuda.get_device_name(GPU)
print(f"gpu_check on {name}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads for the references")
print("| check | precision | output | PSNR vs CPU | max abs err / range | bar | Mpixel/s | frames/s |")
print("|---|---|---|---|---|---|---|---|")
for check in (check_tcs, check_dlss, check_sim, check_sim_raw, check_decode_cli):
    if ONLY and check.__name__[len("check_"):] not in ONLY:
        continue
    try:
        check()
    except Exception:  # report and go on: one run on a lent GPU should say everything
        failed.append(f"{check.__name__} (error)")
        print(f"{check.__name__}: ERROR\n{traceback.format_exc()}", flush=True)
print(f"total {time.perf_counter() - t0:.0f} s; " + (f"FAILED: {', '.join(failed)}" if failed else "all within tolerance"))
sys.exit(1 if failed else 0)

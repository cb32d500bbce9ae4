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
#     (emcs.sim.recon.raw_net_frame, vdlsim-raw: pattern estimation on the CPU, network on the GPU;
#     timed with the estimation and with the patterns given), at 512^2 and 2048^2
#   - `emcs decode` end to end in a child process: float32 on the GPU against float32 on the CPU
#     (1024^2, blend included), then the default decode of a 10 x 4096 x 4096 measurement timed
#     (whole process: start, read, network, blend, write; peak RSS and GPU memory printed)
# Each output is compared with the CPU float32 run of the same input. Tolerances (PSNR of the
# GPU output against the CPU output, peak = the CPU output's range): float32 >= 50 dB (cuDNN may
# use TF32 for float32 convolutions), float16 >= 40 dB, bfloat16 >= 32 dB. Then the GPU alone
# decodes/supersamples/reconstructs a larger frame and prints Mpixel/s (output pixels) and
# frames/s (output frames). Every check runs even if an earlier one fails
# (its traceback is printed). Exit status 1 if any comparison fails or a check errs, 2 without a GPU (no --dry-run).
# Record the printed table in benchmarks/gpu.md.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
    --dry-run|"") ;;
    *) echo "usage: $0 [--dry-run]" >&2; exit 64 ;;
esac
exec python3 benchmarks/gpu_check.py "$@"

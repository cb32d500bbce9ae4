#!/usr/bin/env bash
# Training on a lent GPU: three `emcs train tcs` runs side by side on one card, each with
# --workers processes simulating its batches (the batches, and so the runs, are those that
# --workers 0 would draw). Weights, cards, loss logs and checkpoints go to $WORK (default
# gpu-train/), and with ARCHIVE=file.tgz also into one archive (the device tool returns at most
# 8 files per call: session 16 lost two runs' weights to that). Session 16 ran it on an NVIDIA
# H200 (benchmarks/tcs_heldout.md, benchmarks/gpu.md):
#
#   MINUTES=7 WORKERS=4 WORK=/tmp/gt ARCHIVE=$OUT/gpu-train.tgz bash benchmarks/gpu_train.sh
#   MINUTES=4.5 WORKERS=7 RUNS="a2 c" ...                      # only some of the runs
#   DEVICE=cpu MINUTES=0.2 WORKERS=1 bash benchmarks/gpu_train.sh   # the same logic on a CPU
#
# The runs (fine-tunes of the shipped weights, batch 8 clips at B = 10, 64 x 64 patches):
#   a1: tcs-unfold grown from 5 to 8 stages, B 16-30 (a specialist for large B: capacity)
#   a2: tcs-unfold, 5 stages, the same recipe (the control: more data without more capacity)
#   c:  tcs-unfold-any, session 15's recipe (B 2-30, densities 0.2-0.8, hardware-like masks)
set -u
cd "$(dirname "$0")/.."
OUT=${WORK:-gpu-train}
MIN=${MINUTES:-7}
W=${WORKERS:-4}
DEV=${DEVICE:-cuda}
RUNS=" ${RUNS:-a1 a2 c} "   # which of the runs below
mkdir -p "$OUT"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
    torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
common=(--device "$DEV" --threads 1 --workers "$W" --max-minutes "$MIN" --steps 1000000
        --checkpoint-every 200 --quiet --patch 64 --batch 8 --quantize-steps 0.5,3)
spec=(--model unfold --B 16,20,20,24,30,30 --lr 2e-4 --seed 16 --dose 3,300
      --resume emcs/models/tcs-unfold.safetensors)
[[ $RUNS == *" a1 "* ]] && python3 -m emcs train tcs "${common[@]}" "${spec[@]}" --stages 8 --workdir "$OUT/a1" \
    --out "$OUT/a1/tcs-unfold-b16-30-deep.safetensors" > "$OUT/a1.log" 2>&1 &
[[ $RUNS == *" a2 "* ]] && python3 -m emcs train tcs "${common[@]}" "${spec[@]}" --workdir "$OUT/a2" \
    --out "$OUT/a2/tcs-unfold-b16-30.safetensors" > "$OUT/a2.log" 2>&1 &
[[ $RUNS == *" c "* ]] && python3 -m emcs train tcs "${common[@]}" --model unfold --B 2,4,6,8,10,10,20,30 --lr 1e-4 --seed 16 \
    --density 0.2,0.8 --mask-kinds bernoulli,bernoulli,bernoulli,bernoulli,shifted,blocks2,rows,cols \
    --resume emcs/models/tcs-unfold-any.safetensors --workdir "$OUT/c" \
    --out "$OUT/c/tcs-unfold-any.safetensors" > "$OUT/c.log" 2>&1 &
t0=$(date +%s)
while [ -n "$(jobs -r)" ]; do
    sleep 30
    line="$(( $(date +%s) - t0 )) s:"
    for r in $RUNS; do
        line="$line $r $(tail -n 1 "$OUT/$r/loss.csv" 2>/dev/null | cut -d, -f1,5)"
    done
    command -v nvidia-smi > /dev/null && line="$line gpu $(nvidia-smi --query-gpu=utilization.gpu,memory.used \
        --format=csv,noheader | tr -d ' ')"
    echo "$line"
done
status=0
for r in $RUNS; do
    if [ -f "$OUT/$r/$(ls "$OUT/$r" 2>/dev/null | grep -m1 '\.json$')" ]; then echo "$r: done"; else
        echo "$r: FAILED"; tail -n 20 "$OUT/$r.log"; status=1; fi
done
if [ -n "${ARCHIVE:-}" ]; then tar czf "$ARCHIVE" -C "$OUT" . && echo "archive: $ARCHIVE"; fi
exit $status

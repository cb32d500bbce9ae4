#!/usr/bin/env bash
# End-to-end `emcs decode --method net` of one container by two code trees, alternating.
#
#   benchmarks/bench_tcs_decode_cpu.sh OLD_TREE NEW_TREE CONTAINER REPEATS THREADS OUTDIR
#
# OLD_TREE / NEW_TREE: folders holding an `emcs` package (e.g. `git archive main emcs | tar -x -C
# /tmp/old`); each run sets PYTHONPATH to one of them and OMP_NUM_THREADS to THREADS. Every run is
# timed by `/usr/bin/time -v`; one line per run: tree, wall (s), user + system CPU seconds, peak RSS
# (MiB) and the 1-minute load average just before the run. Outputs go to OUTDIR/<tree>-<k>.tif
# (overwritten; compare them with python, e.g. numpy.abs(a - b).max()).
set -euo pipefail
old=$1 new=$2 container=$3 repeats=$4 threads=$5 outdir=$6
mkdir -p "$outdir"
printf "%-4s %3s %8s %8s %8s %9s %6s\n" tree k wall_s user_s sys_s rss_MiB load1
for k in $(seq 1 "$repeats"); do
  for tree in old new; do
    root=$old; [ "$tree" = new ] && root=$new
    load=$(cut -d' ' -f1 /proc/loadavg)
    log="$outdir/$tree-$k.time"
    PYTHONPATH=$root OMP_NUM_THREADS=$threads /usr/bin/time -v -o "$log" \
      emcs decode "$container" -o "$outdir/$tree-$k.tif" --method net --force --quiet
    wall=$(awk -F': ' '/Elapsed/ {n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s}' "$log")
    user=$(awk -F': ' '/User time/ {print $2}' "$log")
    sys=$(awk -F': ' '/System time/ {print $2}' "$log")
    rss=$(awk -F': ' '/Maximum resident/ {printf "%.0f", $2 / 1024}' "$log")
    printf "%-4s %3s %8s %8s %8s %9s %6s\n" "$tree" "$k" "$wall" "$user" "$sys" "$rss" "$load"
  done
done

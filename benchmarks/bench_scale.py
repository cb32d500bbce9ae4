"""Benchmark of distributed runs (``emcs ... --scheduler local:N``): wall time vs workers, overheads.

Usage::

    python benchmarks/bench_scale.py                 # about 3 minutes on 2 idle cores
    python benchmarks/bench_scale.py --quick         # small sizes, a smoke test

Parts (a LocalCluster of 1 and 2 worker processes, one thread each, on loopback):

1. a batch of ``--files`` containers (``--frames`` x ``--size``^2 uint16,
   B = 10) decoded with GAP-TV (40 iterations, CPU), one task per file
   (:func:`emcs.distributed.map_files`), against the same batch decoded in
   turn in this process (torch with its default threads);
2. one container of the same total size decoded in chunks of one group
   (:func:`emcs.distributed.chunks.decode_chunked`);
3. the per-task overhead: ``--tasks`` empty tasks through the emcs task
   wrapper (cancel check included) and through a bare ``client.submit``;
4. bytes per task: what a per-file task sends and returns (pickled), and the
   measurement / frame bytes a chunk of one group returns.

Prints a Markdown report (the results go to ``benchmarks/scale.md``).
"""

from __future__ import annotations

import argparse
import os
import pickle
import tempfile
import time

import numpy as np


def _noop(progress=None):
    return None


def _warm() -> None:
    """Import what a decode task needs (torch, the decoders): not part of a task's cost."""
    import torch  # noqa: F401

    import emcs.tcs.decode  # noqa: F401


def _worker_cpu(client) -> float:
    """CPU seconds the worker processes have used so far (all of them together)."""
    return sum(client.run(time.process_time).values())


def _movie(path: str, frames: int, size: int, seed: int) -> str:
    from emcs.io import write_stack

    rng = np.random.default_rng(seed)
    write_stack(path, rng.poisson(30, (frames, size, size)).astype(np.uint16))
    return path


def _batch(folder: str, files: int, frames: int, size: int) -> list[str]:
    from emcs.tcs.encode import encode_stack

    names = []
    for i in range(files):
        movie = _movie(os.path.join(folder, f"m{i}.tif"), frames, size, i)
        names.append(os.path.join(folder, f"m{i}.npz"))
        encode_stack(movie, names[-1], seed=i)
    return names


def _timed(func) -> float:
    t0 = time.perf_counter()
    func()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--tasks", type=int, default=100)
    args = parser.parse_args()
    if args.quick:
        args.files, args.frames, args.size, args.tasks = 4, 20, 96, 50

    from emcs.distributed import connect, map_files
    from emcs.distributed.chunks import decode_chunked
    from emcs.distributed.tasks import Run
    from emcs.tcs.decode import decode_container
    from emcs.tcs.encode import encode_stack

    settings = {"method": "gap-tv", "iters": 40, "device": "cpu", "force": True}
    rows, overhead = [], {}
    with tempfile.TemporaryDirectory() as folder:
        names = _batch(folder, args.files, args.frames, args.size)
        big = _movie(os.path.join(folder, "big.tif"), args.files * args.frames, args.size, 99)
        encode_stack(big, os.path.join(folder, "big.npz"), seed=1)
        jobs = [((n, n.replace(".npz", ".out.tif")), settings) for n in names]
        local = _timed(lambda: [decode_container(*a, **k) for a, k in jobs])
        rows.append(("in this process, in turn", "-", local, None))
        for workers in (1, 2):
            with connect(f"local:{workers}") as client:
                client.run(_warm)
                cpu = _worker_cpu(client)
                t = _timed(lambda c=client: map_files(c, decode_container, jobs))
                rows.append(("one task per file", workers, t, (_worker_cpu(client) - cpu) / t))
                cpu = _worker_cpu(client)
                t = _timed(lambda c=client: decode_chunked(c, os.path.join(folder, "big.npz"),
                                                           os.path.join(folder, "big.out.tif"),
                                                           groups_per_task=1, **settings))
                rows.append(("one file, one group per task", workers, t, (_worker_cpu(client) - cpu) / t))
                if workers == 2:
                    run = Run(client)
                    overhead["emcs task (run_task + cancel check)"] = _timed(
                        lambda r=run: [f.result() for f in [r.submit(_noop) for _ in range(args.tasks)]]
                    ) / args.tasks
                    overhead["bare client.submit"] = _timed(
                        lambda c=client: [f.result() for f in [c.submit(_noop, pure=False)
                                                             for _ in range(args.tasks)]]) / args.tasks
        summary = decode_container(*jobs[0][0], **settings)
        sent = len(pickle.dumps((decode_container, jobs[0][0], settings)))
        returned = len(pickle.dumps(summary))
    group_y = args.size**2 * 2  # uint16 sums of 10 uint16 frames of counts ~30 fit 16 bits
    group_x = 10 * args.size**2 * 2
    movie_mb = args.files * args.frames * args.size**2 * 2 / 1e6
    print(f"## Wall time: {args.files} movies of {args.frames} x {args.size}^2 uint16 "
          f"({movie_mb:.1f} MB in all), GAP-TV 40 iterations on the CPU\n")
    print("| how | workers | seconds | speed-up vs 1 worker | cores the workers got (CPU s / wall s) |")
    print("|---|---|---|---|---|")
    one = {how: t for how, w, t, _ in rows if w == 1}
    for how, workers, t, cores in rows:
        ratio = f"{one[how] / t:.2f}" if how in one else "-"
        print(f"| {how} | {workers} | {t:.1f} | {ratio} | {'-' if cores is None else f'{cores:.2f}'} |")
    print(f"\n## Per-task overhead ({args.tasks} empty tasks, 2 workers)\n")
    for name, s in overhead.items():
        print(f"- {name}: {s * 1e3:.1f} ms per task")
    print("\n## Bytes per task\n")
    print(f"- one task per file: {sent} bytes sent (pickled function + arguments), {returned} bytes "
          "returned (the summary); pixels are read and written by the worker")
    print(f"- encode, one group per task: {group_y} bytes returned (one {args.size}^2 uint16 "
          f"measurement); {group_x} bytes of frames read by the worker")
    print(f"- decode, one group per task: {group_x} bytes returned (10 frames), "
          f"{group_y} bytes read by the worker")
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

"""The static / drift blend alone (what `emcs decode` runs after the network), timed on one
measurement whose network frames are cached, so that two code trees can be compared on the same
input without the network's time and drift in between.

    python benchmarks/bench_tcs_blend.py CONTAINER FRAMES.npy [--threads 2]

FRAMES.npy is made on the first call (the default network's frames of the first measurement,
float32, scaled as the decoder returns them). Run it with PYTHONPATH set to each tree (e.g.
`git archive REV emcs | tar -x -C DIR`), alternating; one JSON line per run: wall and CPU seconds,
peak RSS and a hash of the frames (equal hashes: the same output). The blend is the one `emcs
decode` builds (`emcs.tcs.decode.static_blender`), after the malloc setup it makes
(`emcs.nn.device.keep_freed_memory`); a tree from before session 14 blends one strip at a time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import time
from pathlib import Path

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("container")
    p.add_argument("frames", type=Path)
    p.add_argument("--threads", type=int, default=2, help="torch threads of the decode (blend workers)")
    p.add_argument("--drift-px", type=int, default=0,
                   help="roll frame b by drift_px * (b - B // 2) columns (the drift path's cost; the frames no "
                        "longer fit the measurement, so only time and memory mean anything)")
    args = p.parse_args()

    import torch

    import emcs
    from emcs.nn.device import keep_freed_memory
    from emcs.tcs.container import open_container
    from emcs.tcs.decode import static_blender

    keep_freed_memory()
    torch.set_num_threads(args.threads)  # the decode's threads: the blend's workers
    with open_container(args.container) as c:
        op = c.operator
        y = op.scale_measurements(next(iter(c.blocks([1]))), c.value_range, c.B)
        if not args.frames.exists():
            from emcs.tcs import decoders

            net = decoders.get_decoder(decoders.select_decoder("auto", c.B, c.density)[0])
            np.save(args.frames, np.asarray(net(y, op), np.float32))
        x = np.load(args.frames)[0]
        if args.drift_px:
            for b in range(x.shape[0]):
                x[b] = np.roll(x[b], args.drift_px * (b - x.shape[0] // 2), axis=1)
        op.masks()  # as after the network: the full masks are kept
        blend = static_blender(c, "on")  # what emcs decode runs, with this tree's workers
        t, cpu = time.perf_counter(), time.process_time()
        out = blend(x, y[0], op.group(c.B), out=x)
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    print(json.dumps({"tree": str(Path(emcs.__file__).parent.parent), "shape": list(x.shape),
                      "threads": args.threads, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                      "drift_px": args.drift_px, "frames_sha256": hashlib.sha256(out.tobytes()).hexdigest()[:16]}),
          flush=True)

if __name__ == "__main__":
    main()

"""Time emcs.dlss.interp.upsample (bilinear, 1024^2 -> 4096^2 and others), three calls each.

    python benchmarks/bench_dlss_interp.py                     # the emcs on PYTHONPATH / installed
    PYTHONPATH=OLD_TREE python benchmarks/bench_dlss_interp.py # e.g. git archive REV emcs | tar -x -C OLD_TREE
"""
import time

import numpy as np

from emcs.dlss import interp

rng = np.random.default_rng(0)
for size, pitch in ((4096, 4), (4096, 10), (1024, 4)):
    n = len(range((size % pitch) // 2, size, pitch))
    sparse = rng.random((n, n)).astype(np.float32)
    seconds = []
    for _ in range(3):
        t = time.perf_counter()
        interp.upsample(sparse, pitch, (size, size))
        seconds.append(round(time.perf_counter() - t, 3))
    print(f"{interp.__file__} {size}^2 pitch {pitch}: {seconds} s")

"""One bfloat16 denoiser of the shipped tcs-unfold, eager against fused (issue 17, session 18).

    python benchmarks/bench_tcs_fused.py [SIZE [REPEATS]]

Decodes one random SIZE x SIZE, B = 10 tile (default 362, the side-by-side tile of a 4096^2
decode on 2 cores) with the bfloat16 copy to record the first denoiser's real input, then times
that denoiser's eager bfloat16 path and its fused graphs (:mod:`emcs.tcs.nets.fused`) on it,
alternated, REPEATS times (default 5), one thread, with ``emcs decode``'s malloc settings; prints
the milliseconds of each, the tracing time, and each path's largest difference from float32
relative to the residual's range.
"""

from __future__ import annotations

import sys
import time


def main(size: int, repeats: int) -> None:
    import torch

    from emcs.nn.device import keep_freed_memory
    from emcs.tcs.nets import api, bf16, fused

    keep_freed_memory()
    torch.set_num_threads(1)
    model = api.load(api.find_model(10, 0.5), torch.device("cpu"), copy="bfloat16")
    seen = {}
    eager_path = bf16.BF16Denoiser._bf16

    def record(self, z, n):
        seen.setdefault("input", (self, z.clone(), n))
        return eager_path(self, z, n)

    gen = torch.Generator().manual_seed(0)
    y = torch.rand(1, size, size, generator=gen) * 5
    masks = (torch.rand(1, 10, size, size, generator=gen) > 0.5).float()
    bf16.BF16Denoiser._bf16 = record
    with torch.inference_mode():
        model(y, masks)
    bf16.BF16Denoiser._bf16 = eager_path
    den, z, n = seen["input"]
    with torch.inference_mode():
        t0 = time.perf_counter()
        graphs = fused.FusedDenoiser(den, z, n)
        print(f"tracing: {time.perf_counter() - t0:.2f} s")
        want = den.reference(z, n)
        span = float(want.abs().max())
        runs = {"eager": lambda: den._bf16(z, n), "fused": lambda: graphs(z)}
        times = {k: [] for k in runs}
        for _ in range(repeats):
            for k, f in runs.items():
                t0 = time.perf_counter()
                f()
                times[k].append(1e3 * (time.perf_counter() - t0))
        for k, f in runs.items():
            err = float((f() - want).abs().max()) / span
            print(f"{k}: " + " ".join(f"{t:.0f}" for t in times[k]) + f" ms; max |x - float32| / range {err:.4f}")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(*(args + [362, 5][len(args):]))

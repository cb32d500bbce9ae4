"""One denoiser stage of the shipped tcs-unfold: the bfloat16 copy against float32 (issue 17).

    python benchmarks/bench_tcs_bf16_stage.py [SIZE [REPEATS]]

Decodes one random SIZE x SIZE, B = 10 tile (default 362, the side-by-side tile of a 4096^2
decode on 2 cores) with the bfloat16 copy to record the first denoiser's real input, then times
that denoiser's bfloat16 path (:class:`emcs.tcs.nets.bf16.BF16Denoiser`, oneDNN calls with
post-ops) and its float32 original on it, alternated, REPEATS times (default 5), one thread,
with ``emcs decode``'s malloc settings; prints the milliseconds of each and the bfloat16 path's
largest difference from float32 relative to the residual's range.
"""

from __future__ import annotations

import sys
import time


def main(size: int, repeats: int) -> None:
    import torch

    from emcs.nn.device import keep_freed_memory
    from emcs.tcs.nets import api, bf16

    keep_freed_memory()
    torch.set_num_threads(1)
    model = api.load(api.find_model(10, 0.5), torch.device("cpu"), copy="bfloat16")
    seen = {}
    path = bf16.BF16Denoiser._bf16

    def record(self, z, n):
        seen.setdefault("input", (self, z.clone(), n))
        return path(self, z, n)

    gen = torch.Generator().manual_seed(0)
    y = torch.rand(1, size, size, generator=gen) * 5
    masks = (torch.rand(1, 10, size, size, generator=gen) > 0.5).float()
    bf16.BF16Denoiser._bf16 = record
    with torch.inference_mode():
        model(y, masks)
    bf16.BF16Denoiser._bf16 = path
    den, z, n = seen["input"]
    with torch.inference_mode():
        want = den.reference(z, n)
        span = float(want.abs().max())
        runs = {"bfloat16": lambda: den._bf16(z, n), "float32": lambda: den.reference(z, n)}
        times = {k: [] for k in runs}
        for _ in range(repeats):
            for k, f in runs.items():
                t0 = time.perf_counter()
                f()
                times[k].append(1e3 * (time.perf_counter() - t0))
        err = float((den._bf16(z, n) - want).abs().max()) / span
    for k in runs:
        print(f"{k}: " + " ".join(f"{t:.0f}" for t in times[k]) + " ms")
    print(f"bfloat16: max |x - float32| / range {err:.4f}")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(*(args + [362, 5][len(args):]))

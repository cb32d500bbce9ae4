"""The heap after fused and eager bfloat16 tiles (issue 17, session 18: why ``EMCS_FUSE=1`` peaks higher).

    EMCS_FUSE=0|1 python benchmarks/bench_tcs_fused_heap.py [SIZE]

With ``emcs decode``'s malloc settings (:func:`emcs.nn.device.keep_freed_memory`) decodes one
random SIZE x SIZE, B = 10 tile (default 338, a 4096^2 decode's side-by-side tile) three times on
one thread (with ``EMCS_FUSE=1`` the graphs are built on the second), then three rounds of six
tiles on each of two threads side by side, as ``emcs decode`` runs them; after each step prints
glibc's ``mallinfo2()``: the heap's size, the bytes in use and the bytes in free chunks (kept,
resident).
"""

from __future__ import annotations

import ctypes
import sys
import threading


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]


def heap() -> str:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    m = libc.mallinfo2()
    return f"heap {m.arena >> 20} MiB, in use {m.uordblks >> 20} MiB, free chunks {m.fordblks >> 20} MiB"


def main(size: int) -> None:
    import torch

    from emcs.nn.device import keep_freed_memory
    from emcs.tcs.nets import api

    keep_freed_memory()
    torch.set_num_threads(1)
    model = api.load(api.find_model(10, 0.5), torch.device("cpu"), copy="bfloat16")
    gen = torch.Generator().manual_seed(0)
    y = torch.rand(1, size, size, generator=gen) * 5
    masks = (torch.rand(1, 10, size, size, generator=gen) > 0.5).float()

    def tiles(k: int) -> None:
        with torch.inference_mode():
            for _ in range(k):
                model(y, masks)

    tiles(3)
    print("after 3 tiles on one thread:", heap())
    for _ in range(3):
        threads = [threading.Thread(target=tiles, args=(6,)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print("after 6 more tiles on each of two threads:", heap())


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 338)

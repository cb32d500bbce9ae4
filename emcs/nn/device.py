"""Resolve a device name (``auto``, ``cpu``, ``cuda``) once and prepare the process for tensor work.

Call :func:`pick_device` once, at the public boundary, and pass the resulting
``torch.device`` on (never its string, to be picked again).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys

from emcs.errors import EmcsError


@functools.cache
def keep_freed_memory() -> bool:
    """Stop glibc from handing large freed blocks straight back to the kernel.

    Tiled inference allocates and frees the same few hundred MB of activations
    for every tile. By default glibc serves such blocks with ``mmap`` and
    unmaps them on ``free``, so every tile page-faults its memory in again:
    decoding a 1024 x 1024, B = 10 measurement spent 58 of 104 CPU seconds in
    the kernel (26 M minor faults). Serving them from the heap and not trimming
    it (``M_MMAP_MAX = 0``, ``M_TRIM_THRESHOLD = 2**31 - 1``) keeps the pages:
    the same decode ran 2.5x faster (55 s -> 22 s wall, identical output) with
    a peak RSS of 1.18 GB instead of 0.91 GB. All threads share that one heap
    (``M_ARENA_MAX = 1``): glibc gives each new thread its own arena, made of
    mmap-ed 64 MiB heaps that cannot hold a tile's tensors, and with tiles
    computed side by side in threads (:func:`tile_workers`) a 4096 x 4096
    decode spent 104 of 333 CPU seconds in the kernel.

    Best effort: does nothing (and returns False) off glibc. Called once per
    process by :func:`pick_device`.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max, m_arena_max = -1, -4, -8
        return (bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
                and bool(libc.mallopt(m_arena_max, 1)))
    except (OSError, AttributeError):
        return False


def pick_device(name="auto"):
    """Return a ``torch.device`` for ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    ``auto`` picks CUDA when a GPU is visible and the CPU otherwise. Asking for
    CUDA on a machine without one is a user error (:class:`EmcsError`). The
    first call also tunes the C allocator for tiled tensor work
    (:func:`keep_freed_memory`). A ``torch.device`` is returned as it is.
    """
    import torch

    keep_freed_memory()
    if isinstance(name, torch.device):
        return name
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EmcsError(f"device {name}: no CUDA GPU is available on this machine", param="device")
        try:
            return torch.device(name)
        except RuntimeError as exc:
            raise EmcsError(f"device {name}: {exc}", param="device") from exc
    raise EmcsError(f"device must be auto, cpu or cuda, got {name!r}", param="device")


@contextlib.contextmanager
def tile_workers(device, parallel: bool = True):
    """Run tiles side by side on the CPU, one intra-op thread each.

    Yields how many tiles to compute at once (``workers`` of
    :func:`emcs.nn.tiling.tiled_apply`): torch's intra-op thread count on the
    CPU when ``parallel``, else 1; meanwhile torch's intra-op threads are set to
    1 (restored on exit). Independent tiles need no barrier between threads, so
    a thread that the OS deschedules (a shared machine) delays only its own
    tile: decoding a 1024 x 1024, B = 10 measurement under load took 34 s wall
    with two intra-op threads and 19 s with one (benchmarks/tcs_speed.md).
    """
    import torch

    threads = torch.get_num_threads()
    if device.type != "cpu" or not parallel or threads <= 1:
        yield 1
        return
    torch.set_num_threads(1)
    try:
        yield threads
    finally:
        torch.set_num_threads(threads)

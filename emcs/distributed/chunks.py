"""One large movie in chunks: encode groups / decode measurements on the workers, in order.

The client keeps the single output: it writes the results in order as they
arrive (:func:`emcs.distributed.tasks.ordered_stream`), with at most
``in_flight`` chunks in flight, so its memory is a few chunks whatever the
movie length. Workers read their chunk by path (a shared filesystem): the
frames never pass through the client or the scheduler, only the chunk's
measurements (encode) or frames (decode) come back.

The output is the one a local run writes: :func:`encode_chunked` makes the
same measurements with the same operator and input description as
:func:`emcs.tcs.encode.encode_stack` (only the container's ``created`` time
differs), :func:`decode_chunked` runs :func:`emcs.tcs.decode.iter_decoded` on
the same batches of groups as :func:`emcs.tcs.decode.decode_container`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from emcs.distributed.client import network_resources, worker_info
from emcs.distributed.tasks import Run, ordered_stream
from emcs.errors import EmcsError

#: chunks in flight (submitted and not yet written) per worker, by default
IN_FLIGHT_PER_WORKER = 2


def default_in_flight(client) -> int:
    """Two chunks per worker of ``client``: one running, one waiting behind it."""
    return IN_FLIGHT_PER_WORKER * max(1, len(worker_info(client)))


# --------------------------------------------------------------------------- encode
def encode_groups(path: str, op, first: int, counts: list[int], period: int, threads: int = 1,
                  progress: Callable | None = None) -> dict:
    """Worker side: the measurements of groups ``first .. first + len(counts) - 1`` of ``path``.

    Each group goes through the local encoder's per-group step
    (:func:`emcs.tcs.encode.sum_group` in ``threads`` row bands,
    :class:`emcs.tcs.encode.InputStats` with noise samples every ``period``
    frames). Returns the measurements (one (H, W) array per group), and the
    statistics of the frames.
    """
    from emcs.io import open_stack
    from emcs.tcs.encode import InputStats, sum_group

    B = op.B
    stats = InputStats(path, period)
    ys = []
    with open_stack(path) as stack, ThreadPoolExecutor(threads) as pool:
        patterns = op.patterns(stack.dtype, threads)
        for i, n in enumerate(counts):
            start = (first + i) * B
            frames = stack.read(start, start + n, copy=False)  # a view of the mapped file where possible
            y, frange, _ = sum_group(frames, patterns, pool if threads > 1 else None, threads)()
            stats.add(start, frames, *frange)
            stack.release(start, start + n)
            ys.append(y)
            if progress is not None:
                progress(1)
    return {"y": ys, "counts": counts, "stats": stats}


def encode_chunked(client, input_path: str | os.PathLike, output_path: str | os.PathLike, *,
                   B: int = 10, seed: int | None = None, density: float = 0.5,
                   masks: np.ndarray | None = None, mask_source: str | None = None,
                   force: bool = False, pack: str | None = "none", quantize: float | None = None,
                   threads: int | None = None, adaptive: bool = False, groups_per_task: int = 1, in_flight: int | None = None,
                   progress: Callable[[int], None] | None = None) -> dict:
    """Encode one movie with its groups spread over the cluster; the client writes the container.

    Parameters are those of :func:`emcs.tcs.encode.encode_stack` (but ``adaptive``:
    adaptive groups are sequential decisions, refused here), plus

    client : distributed.Client
    threads : int, optional
        Threads summing each group on a worker (default 1: the workers are the parallelism).
    groups_per_task : int
        Groups of B frames each task encodes.
    in_flight : int, optional
        Tasks in flight at most (the client holds at most this many chunks
        of measurements); default: two per worker (:func:`default_in_flight`).
    progress : callable, optional
        Called with the number of groups written.

    Returns
    -------
    dict
        The summary :func:`~emcs.tcs.encode.encode_stack` returns.
    """
    from emcs import io as eio
    from emcs.tcs.container import ContainerWriter, base_meta
    from emcs.tcs.encode import (
        InputStats,
        check_mask_options,
        check_threads,
        encode_operator,
        encode_summary,
        fixed_counts,
        noise_period,
    )
    from emcs.tcs.operator import stored_dtype

    input_path, output_path = os.fspath(input_path), os.fspath(output_path)
    if groups_per_task < 1:
        raise EmcsError(f"groups_per_task must be at least 1, got {groups_per_task}",
                        param="groups_per_task")
    if adaptive:
        raise EmcsError("adaptive cannot encode one movie in chunks: its groups are decided in one "
                        "sequential pass over the frames (leave out the scheduler, or give several "
                        "movies: each is then encoded whole by one worker)", param="adaptive")
    check_mask_options(None if masks is not None else B, density, seed)
    threads = check_threads(1 if threads is None else threads)
    t0 = time.perf_counter()
    with eio.open_stack(input_path) as stack, eio.atomic_output(output_path, force) as tmp:
        T, H, W = stack.shape
        op = encode_operator(masks, mask_source, B, seed, density, (H, W), input_path)
        counts = fixed_counts(T, op.B)
        N = len(counts)
        stats = InputStats(input_path, noise_period(T, op.B))
        writer = ContainerWriter(tmp, N, H, W, stored_dtype(stack.dtype, op.B), pack=pack,
                                 quantize=quantize, source=input_path, operator=op)
        try:
            shared_op = client.scatter(op, broadcast=True, hash=False)
            run = Run(client)

            def submit(first: int):
                part = [int(n) for n in counts[first:first + groups_per_task]]
                return run.submit(encode_groups, input_path, shared_op, first, part, stats.period,
                                  threads)

            in_flight = in_flight or default_in_flight(client)
            for chunk in ordered_stream(submit, range(0, N, groups_per_task), in_flight, run.value):
                for y, n in zip(chunk["y"], chunk["counts"], strict=True):
                    writer.write(y, frames=n)
                stats.merge(chunk["stats"])
                if progress is not None:
                    progress(len(chunk["y"]))
            input_info = stats.description(stack)
            meta = base_meta(B=op.B, n=N, frame_shape=(H, W), mask=op.meta, input_info=input_info,
                             encoder={"operation": "sum of masked frames (bitwise AND + add)"})
            meta = writer.finish(meta, counts)
        except BaseException:
            writer.abort()
            raise
    return encode_summary(input_path, output_path, op, counts, meta, input_info,
                          time.perf_counter() - t0)


# --------------------------------------------------------------------------- decode
def decode_groups(path: str, start: int, stop: int, plan: dict, *, iters: int, device: str,
                  noise: str, ensemble: int, dtype, precision: str = "auto",
                  static_blend: str = "on", progress: Callable | None = None) -> tuple:
    """Worker side: frames of measurements ``start:stop`` (whole batches of the local decoder).

    The device and the networks' arithmetic are resolved here, on the worker
    (``auto``: its GPU if it has one). Returns ``(frames, device name, arithmetic)``.
    """
    from emcs.nn.device import pick_device
    from emcs.tcs.container import open_container
    from emcs.tcs.decode import iter_decoded, network_arithmetic

    dev = pick_device(device)
    with open_container(path) as container:
        part = dataclasses.replace(container, measurements=np.asarray(container.measurements[start:stop]),
                                   counts=container.counts[start:stop], verified=True)
        frames = [x for _, x in iter_decoded(part, plan, iters=iters, device=dev, noise=noise,
                                             ensemble=ensemble, dtype=dtype, precision=precision,
                                             static_blend=static_blend, progress=progress)]
    return np.concatenate(frames), str(dev), network_arithmetic(plan, precision, dev)


def decode_chunked(client, source: str | os.PathLike, output: str | os.PathLike | None = None, *,
                   method: str = "auto", iters: int | None = None, device: str = "auto",
                   force: bool = False, noise: str = "auto", ensemble: int = 1, dtype: str = "input",
                   model: str | os.PathLike | None = None, precision: str = "auto", static_blend: str = "on",
                   groups_per_task: int | None = None, in_flight: int | None = None,
                   progress: Callable[[int], None] | None = None,
                   on_note: Callable[[str], None] | None = None) -> dict:
    """Decode one container with its measurements spread over the cluster; the client writes.

    Parameters are those of :func:`emcs.tcs.decode.decode_container`, plus

    client : distributed.Client
    groups_per_task : int, optional
        Groups each task decodes; default: the batches of groups the local
        decoder makes (a few groups of large frames, so that a work block
        holds about :data:`emcs.tcs.gaptv.MAX_ELEMENTS` values). The decoders
        treat the groups of a batch independently, so the frames do not
        depend on it.
    in_flight : int, optional
        Tasks in flight at most (the client holds at most this many chunks of
        frames); default: two per worker (:func:`default_in_flight`).

    Tasks that run a network ask for a GPU worker when the cluster has any
    (:func:`emcs.distributed.client.network_resources`); the device is chosen
    on the worker.

    The checksum of the measurements is checked by the client as the chunks
    are written; a mismatch leaves no output.
    """
    from emcs.io import StackWriter
    from emcs.tcs import decode
    from emcs.tcs.container import open_container
    from emcs.tcs.gaptv import DEFAULT_ITERS, MAX_ELEMENTS

    iters = DEFAULT_ITERS if iters is None else iters
    decode.check_decode_options(iters, noise, ensemble, precision, static_blend)
    decode.output_dtype(dtype, np.uint16)  # checks the name before the container is opened
    t0 = time.perf_counter()
    with open_container(getattr(source, "path", source)) as container:
        path = container.path
        output = decode.default_output(path) if output is None else os.fspath(output)
        T, H, W = container.input_shape
        out_dtype = decode.output_dtype(dtype, container.input_dtype)
        level, sigma = decode.choose_noise_level(container, noise)
        plan, notes = decode.plan_methods(container, method, model)
        notes += decode.static_blend_notes(plan, static_blend, sigma)
        for note in notes if on_note is not None else ():
            on_note(note)
        per_task = groups_per_task or max(1, MAX_ELEMENTS // (container.B * H * W))
        chunks = decode.group_batches(container.counts, per_task)
        run = Run(client)
        uses_net = device != "cpu" and any(kind == "net" for kind, _ in plan.values())
        resources = network_resources(client) if uses_net else None
        settings = {"iters": iters, "device": device, "noise": level, "ensemble": ensemble,
                    "dtype": out_dtype, "precision": precision, "static_blend": static_blend}
        devices, arithmetic = set(), set()
        with StackWriter(output, container.input_shape, out_dtype,
                         pixel_size=container.pixel_size, force=force) as writer:
            stream = ordered_stream(
                lambda chunk: run.submit(decode_groups, path, *chunk, plan, resources=resources, **settings),
                chunks, in_flight or default_in_flight(client), run.value)
            checked = container.blocks(stop for _, stop in chunks)  # the checksum, on the way
            for (start, stop), (frames, dev, kind), _ in zip(chunks, stream, checked, strict=True):
                writer.write(frames)
                devices.add(dev)
                arithmetic.update([kind] if kind else [])
                if progress is not None:
                    progress(stop - start)
    seconds = time.perf_counter() - t0
    return {
        "input": path, "output": output, "shape": [int(T), int(H), int(W)],
        "dtype": out_dtype.name, "input_dtype": container.input_dtype.name, "pixel_size": container.pixel_size, "B": container.B,
        "n_measurements": container.n_measurements, "method": method,
        "decoders": sorted({f"net:{name}" if kind == "net" else "gap-tv" for kind, name in plan.values()}),
        "iters": int(iters), "noise_level": level, "ensemble": int(ensemble),
        "precision": ", ".join(sorted(arithmetic)) or None, "noise_sigma_scaled": sigma, "device": ", ".join(sorted(devices)), "notes": notes,
        "static_blend": decode.applied_static_blend(plan, static_blend, sigma),
        "seconds": seconds, "frames_per_s": T / max(seconds, 1e-9),
    }

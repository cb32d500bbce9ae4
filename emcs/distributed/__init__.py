"""Distributed runs on a Dask cluster (the ``[dask]`` extra: ``dask[distributed]``, ``dask-jobqueue``).

Nothing here imports Dask at module level: it is loaded when a cluster is
asked for (``emcs ... --scheduler`` / ``--cluster``).

Modules
-------
:mod:`~emcs.distributed.client`
    :func:`connect` to a running scheduler, a local cluster (``local[:N]``)
    or SLURM / PBS jobs (dask-jobqueue).
:mod:`~emcs.distributed.tasks`
    :func:`map_files` (one task per file, ``keep_going``, cancellation) and
    :func:`ordered_stream` (results in order, a bounded number in flight).
:mod:`~emcs.distributed.chunks`
    one large file in chunks: :func:`encode_chunked` (groups of frames on the
    workers, the container written by the client) and :func:`decode_chunked`
    (measurements on the workers, the frames written by the client).
"""

from __future__ import annotations

from emcs.distributed.client import JobResources, connect, jobqueue_cluster, parse_scheduler
from emcs.distributed.tasks import Outcome, map_files, ordered_stream

__all__ = ["JobResources", "Outcome", "connect", "jobqueue_cluster", "map_files", "ordered_stream",
           "parse_scheduler"]

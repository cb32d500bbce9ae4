"""Running a command on a Dask cluster: the shared options and :class:`Dist`.

Commands that work per file or per chunk take ``--scheduler`` / ``--cluster``
(with ``--cluster-config`` and ``--resources``) and, with many inputs,
``--keep-going``. Without them nothing changes: :mod:`emcs.distributed` and
Dask are imported only when one is given (docs/distributed.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import typer

from emcs.cli._common import Reporter
from emcs.errors import EmcsError

SCHEDULER_OPTION = typer.Option(
    None, "--scheduler", metavar="ADDRESS|local[:N]",
    help="Run on Dask: a running scheduler (tcp://head:8786) or local:N worker processes here "
         "(needs the dask extra; docs/distributed.md).")
CLUSTER_OPTION = typer.Option(
    None, "--cluster", metavar="slurm|pbs",
    help="Run on Dask workers started as SLURM or PBS jobs (dask-jobqueue; see --resources).")
CLUSTER_CONFIG_OPTION = typer.Option(
    None, "--cluster-config", metavar="YAML",
    help="dask-jobqueue settings for --cluster (queue, account ...); default "
         "~/.config/dask/jobqueue.yaml.")
RESOURCES_OPTION = typer.Option(
    None, "--resources", metavar="KEY=VALUE,...",
    help="What --cluster asks for: jobs=N, and per job cores=N, memory=16GB, walltime=01:00:00, "
         "gpus=N, processes=N (Dask workers); unset ones come from the configuration.")
KEEP_GOING_OPTION = typer.Option(
    False, "--keep-going",
    help="With many inputs: report a bad file, finish the others, exit with status 2 at the end.")

_RESOURCE_TYPES = {"jobs": int, "cores": int, "memory": str, "walltime": str, "gpus": int,
                   "processes": int}


def parse_resources(text: str | None):
    """``--resources`` as :class:`emcs.distributed.JobResources`."""
    from emcs.distributed import JobResources

    values = {}
    for item in filter(None, (text or "").split(",")):
        key, _, value = item.partition("=")
        key = key.strip().lower()
        if key not in _RESOURCE_TYPES or not value.strip():
            raise EmcsError(f"--resources takes KEY=VALUE items with KEY one of "
                            f"{', '.join(_RESOURCE_TYPES)}, got {item!r}")
        try:
            values[key] = _RESOURCE_TYPES[key](value.strip())
        except ValueError:
            raise EmcsError(f"--resources: {key} must be an integer, got {value!r}") from None
    resources = JobResources(**values)
    resources.check()
    return resources


class Dist:
    """The distributed options of one command; false when the command runs as before.

    Parameters are the command's ``--scheduler``, ``--cluster``,
    ``--cluster-config``, ``--resources`` and ``--keep-going`` values.
    """

    def __init__(self, scheduler: str | None = None, cluster: str | None = None,
                 cluster_config: str | None = None, resources: str | None = None,
                 keep_going: bool = False):
        if scheduler is not None and cluster is not None:
            raise EmcsError("--scheduler and --cluster exclude each other")
        if (cluster_config is not None or resources is not None) and cluster is None:
            raise EmcsError("--cluster-config and --resources go with --cluster")
        self.scheduler, self.cluster = scheduler, cluster
        self.config, self.resources = cluster_config, resources
        self.keep_going = keep_going
        self.failed: list[EmcsError] = []

    def __bool__(self) -> bool:
        return self.scheduler is not None or self.cluster is not None or self.keep_going

    @property
    def on_cluster(self) -> bool:
        return self.scheduler is not None or self.cluster is not None

    @contextlib.contextmanager
    def client(self):
        from emcs.distributed import connect

        with connect(self.scheduler, self.cluster, resources=parse_resources(self.resources),
                     config=self.config) as client:
            yield client

    def files(self, rep: Reporter, label: str, func: Callable, jobs: Sequence[tuple[tuple, dict]],
              network: bool = False) -> list[dict | None]:
        """``func(*args, **kwargs)`` for every job, one task each (or in turn here without a cluster).

        A failed file is warned about (and counted for :meth:`finish`) with
        ``--keep-going``; without it the first error stops the run. Returns the
        summaries in the order of ``jobs``, None for the failed ones.
        ``network``: the task runs a network, so it asks a GPU worker for its
        GPU when the cluster has any (``dask worker --resources GPU=1``).
        """
        if not self.on_cluster:
            outcomes = [self._local(func, args, kwargs) for args, kwargs in rep.track(jobs, label, len(jobs))]
        else:
            from emcs.distributed import map_files
            from emcs.distributed.client import network_resources

            with self.client() as client, rep.progress(label, len(jobs)) as advance:
                outcomes = map_files(client, func, jobs, keep_going=self.keep_going, progress=advance,
                                     resources=network_resources(client) if network else None)
        for outcome in outcomes:
            if not outcome.ok:
                rep.warn(f"skipped: {outcome.error}")
                self.failed.append(outcome.error)
        return [outcome.value for outcome in outcomes]

    def call(self, rep: Reporter, label: str, func: Callable, network: bool = False) -> Callable:
        """``func`` itself without a cluster; on one, a stand-in that runs the call as one task
        (see :meth:`files`; the task gets its own ``progress``, the bar counts the task)."""
        if not self.on_cluster:
            return func

        def one_task(*args, progress=None, **kwargs):
            return self.files(rep, label, func, [(args, kwargs)], network)[0]

        return one_task

    def _local(self, func: Callable, args: tuple, kwargs: dict):
        from emcs.distributed import Outcome

        try:
            return Outcome(value=func(*args, **kwargs))
        except EmcsError as exc:
            if not self.keep_going:
                raise
            return Outcome(error=exc)

    def chunked(self, rep: Reporter, label: str, total: int | None, func: Callable, *args, **kwargs) -> dict:
        """``func(client, *args, progress=..., **kwargs)``: one large file in chunks on the cluster
        (:mod:`emcs.distributed.chunks`)."""
        with self.client() as client, rep.progress(label, total) as advance:
            return func(client, *args, progress=advance, **kwargs)

    def encode(self, rep: Reporter, inputs: list[str], outputs: list[str], options: dict,
               n_frames: int | None, group: int) -> list[dict | None]:
        """``emcs encode``: one movie (of ``n_frames``) in chunks of groups, many movies one task each."""
        if len(inputs) == 1 and self.on_cluster:
            from emcs.distributed.chunks import encode_chunked

            n_groups = None if n_frames is None else -(-n_frames // max(group, 1))
            return [self.chunked(rep, f"Encoding {inputs[0]}", n_groups, encode_chunked, inputs[0],
                                 outputs[0], **options)]
        from emcs.tcs.encode import encode_stack

        jobs = [((inp, out), options) for inp, out in zip(inputs, outputs, strict=True)]
        return self.files(rep, "Encoding", encode_stack, jobs)

    def decode(self, rep: Reporter, container, output, options: dict) -> dict:
        """``emcs decode`` of one container, its measurements in chunks on the cluster."""
        from emcs.distributed.chunks import decode_chunked
        from emcs.tcs.container import open_container

        with open_container(container) as opened:
            total = opened.n_measurements
        return self.chunked(rep, f"Decoding {container}", total, decode_chunked, container, output, **options)

    def finish(self, total: int) -> None:
        """Raise the summary error of a ``--keep-going`` run that had failures (exit status 2)."""
        if self.failed:
            raise EmcsError(f"{len(self.failed)} of {total} inputs failed (see the warnings above)")

"""Running a command on a Dask cluster: the shared options and :class:`Dist`.

Commands that work per file or per chunk take ``--scheduler`` / ``--cluster``
(with ``--cluster-config`` and ``--resources``). Without them nothing
changes: :mod:`emcs.distributed` and Dask are imported only when one is given
(docs/distributed.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import typer

from emcs.cli._common import Reporter, run_each
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
    ``--cluster-config`` and ``--resources`` values. The command keeps its
    shape: :meth:`run_each` replaces :func:`emcs.cli._common.run_each` (the
    items run concurrently, one task each), and the one library call of an
    item goes through :meth:`call`.
    """

    def __init__(self, scheduler: str | None = None, cluster: str | None = None,
                 cluster_config: str | None = None, resources: str | None = None):
        if scheduler is not None and cluster is not None:
            raise EmcsError("--scheduler and --cluster exclude each other")
        if (cluster_config is not None or resources is not None) and cluster is None:
            raise EmcsError("--cluster-config and --resources go with --cluster")
        self.scheduler, self.cluster = scheduler, cluster
        self.config, self.resources = cluster_config, resources
        self._run = None  # the run of many items (run_each), while it lasts

    def __bool__(self) -> bool:
        return self.scheduler is not None or self.cluster is not None

    @contextlib.contextmanager
    def client(self):
        from emcs.distributed import connect

        with connect(self.scheduler, self.cluster, resources=parse_resources(self.resources),
                     config=self.config) as client:
            yield client

    def run_each(self, rep: Reporter, items: Sequence, work: Callable[[Any], Any], keep_going: bool,
                 label: str = "Files") -> tuple[list, list[str]]:
        """:func:`emcs.cli._common.run_each`, with the items' library calls as tasks of one run.

        Without a cluster, or with one item (a large file then runs in chunks:
        :meth:`call`), it is ``run_each`` itself. Otherwise ``work(item)`` runs
        for every item at once in threads of this process, each waiting for its
        task; the progress bar counts finished items (the items' own bars are
        off). Results and failures come in the order of ``items``.
        """
        if not self or len(items) < 2:
            return run_each(rep, items, work, keep_going)
        from concurrent.futures import ThreadPoolExecutor, as_completed

        from emcs.distributed.tasks import Run

        results, failures = [], []
        with self.client() as client, rep.progress(label, len(items), unit="files") as advance, \
                ThreadPoolExecutor(max_workers=min(len(items), 64)) as pool:
            self._run = Run(client)
            rep.progress = _no_bar  # the items' bars: one live display at a time
            try:
                futures = [pool.submit(work, item) for item in items]
                for future in as_completed(futures):
                    advance(1)
                    if future.exception() is not None and not keep_going:
                        self._run.cancel()
                        future.result()
                for future in futures:
                    try:
                        results.append(future.result())
                    except EmcsError as exc:
                        failures.append(str(exc))
                        rep.warn(f"skipped: {exc}")
            except KeyboardInterrupt:
                self._run.cancel()
                raise
            finally:
                del rep.progress
                self._run = None
        return results, failures

    def call(self, rep: Reporter, label: str, func: Callable, *, network: bool = False,
             chunked: str | None = None) -> Callable:
        """``func`` itself without a cluster; on one, a stand-in that runs the call there.

        Inside :meth:`run_each` the call is one task of its run; alone it is
        ``chunked(client, *args, progress=..., **kwargs)`` when given (the name
        of a function of :mod:`emcs.distributed.chunks`: one large file in
        chunks), else one task.
        A task gets its own ``progress`` callback (the run's cancel check);
        ``network``: the task runs a network, so it asks a GPU worker for its
        GPU when the cluster has any (``dask worker --resources GPU=1``). An
        opened container (an argument with a ``path``) goes as its path.
        """
        if not self:
            return func

        def stand_in(*args, progress=None, **kwargs):
            args = tuple(getattr(a, "path", a) for a in args)
            if self._run is not None:
                return self._task(self._run, func, args, kwargs, network)
            with self.client() as client:
                if chunked is not None:
                    from emcs.distributed import chunks

                    return getattr(chunks, chunked)(client, *args, progress=progress, **kwargs)
                from emcs.distributed.tasks import Run

                with rep.progress(label, 1, unit="files") as advance:
                    value = self._task(Run(client), func, args, kwargs, network)
                    advance(1)
                return value

        return stand_in

    @staticmethod
    def _task(run, func: Callable, args: tuple, kwargs: dict, network: bool):
        from emcs.distributed.client import network_resources

        resources = network_resources(run.client) if network else None
        return run.value(run.submit(func, *args, resources=resources, **kwargs))


@contextlib.contextmanager
def _no_bar(*_args, **_kwargs):
    yield lambda n=1: None

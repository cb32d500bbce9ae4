"""Connect to a Dask cluster: a running scheduler, a local one, or SLURM / PBS jobs.

:func:`connect` is the one entry point; Dask is imported only when it is
called (an ``emcs`` command without ``--scheduler`` / ``--cluster`` never
loads it). Batch clusters are made by dask-jobqueue
(:func:`jobqueue_cluster`) from its configuration: the standard Dask file
``~/.config/dask/jobqueue.yaml`` (or any file in ``$DASK_CONFIG``), or a
YAML file handed in as ``config``, with the resources given here
(cores, memory, walltime, GPUs) taking precedence.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

from emcs.errors import EmcsError
from emcs.extras import require

#: batch systems dask-jobqueue drives for ``cluster``
CLUSTER_KINDS = ("slurm", "pbs")
#: the Dask worker resource a GPU worker advertises (``dask worker --resources GPU=1``)
GPU_RESOURCE = "GPU"


@dataclass(frozen=True)
class JobResources:
    """What one batch job asks for; None leaves the configuration's value.

    Parameters
    ----------
    jobs : int
        Batch jobs to start (each runs ``processes`` Dask workers).
    cores : int, optional
        CPU cores per job.
    memory : str, optional
        Memory per job, in Dask's words (``"16GB"``).
    walltime : str, optional
        Time limit per job (``"01:00:00"``).
    gpus : int
        GPUs per job; each of its workers then advertises ``GPU`` resources.
    processes : int, optional
        Dask worker processes per job (default: the configuration's, else 1).
    """

    jobs: int = 1
    cores: int | None = None
    memory: str | None = None
    walltime: str | None = None
    gpus: int = 0
    processes: int | None = None

    def check(self) -> None:
        """Raise :class:`EmcsError` (naming the parameter) for an impossible request."""
        for name in ("jobs", "cores", "processes"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise EmcsError(f"{name} must be at least 1, got {value}", param=name)
        if self.gpus < 0:
            raise EmcsError(f"gpus must be >= 0, got {self.gpus}", param="gpus")


def parse_scheduler(text: str) -> tuple[str, str | int | None]:
    """``("local", N or None)`` for ``local[:N]``, else ``("address", address)``.

    Examples
    --------
    >>> parse_scheduler("local:2")
    ('local', 2)
    >>> parse_scheduler("local")
    ('local', None)
    >>> parse_scheduler("tcp://head:8786")
    ('address', 'tcp://head:8786')
    """
    text = text.strip()
    if text == "local" or text.startswith("local:"):
        count = text.partition(":")[2]
        if not count:
            return "local", None
        if not count.isdigit() or int(count) < 1:
            raise EmcsError(f"scheduler must be 'local' or 'local:N' with N >= 1 workers, got {text!r}",
                            param="scheduler")
        return "local", int(count)
    if "://" not in text and ":" not in text:
        raise EmcsError(f"scheduler must be 'local[:N]' or an address such as tcp://head:8786, "
                        f"got {text!r}", param="scheduler")
    return "address", text


def local_cluster(n_workers: int | None = None, **kwargs):
    """A :class:`distributed.LocalCluster` of worker processes (one thread each) on loopback.

    ``n_workers`` defaults to the CPU count; GPUs of this machine are not
    declared as resources (every local worker may use them).
    """
    from distributed import LocalCluster

    n = n_workers or os.cpu_count() or 1
    return LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                        dashboard_address=":0", **kwargs)


def jobqueue_cluster(kind: str, resources: JobResources = JobResources(), config: str | None = None):
    """A dask-jobqueue cluster (not yet scaled) for ``kind`` ("slurm" or "pbs").

    Parameters
    ----------
    kind : {"slurm", "pbs"}
    resources : JobResources
        Per-job resources; the fields left None come from the configuration.
    config : str, optional
        A YAML file in the layout of dask-jobqueue's ``jobqueue.yaml``
        (``jobqueue: slurm: {queue: ..., account: ..., ...}``), merged into
        Dask's configuration for the rest of the process (dask-jobqueue reads
        it whenever it writes a job script); without it Dask's own
        configuration (``~/.config/dask/jobqueue.yaml``) is used.

    Returns
    -------
    dask_jobqueue.JobQueueCluster
        Its ``job_script()`` is the batch script each job will run.
    """
    kind = kind.strip().lower()
    if kind not in CLUSTER_KINDS:
        raise EmcsError(f"cluster must be one of {', '.join(CLUSTER_KINDS)}, got {kind!r}", param="cluster")
    resources.check()
    dask_jobqueue = require("dask_jobqueue", "dask", f"a {kind} cluster")
    import dask.config

    if config is not None:  # read again whenever a job script is made: merged for the process
        dask.config.update(dask.config.config, _read_config(config), priority="new")
    base = dask.config.get(f"jobqueue.{kind}", default={}) or {}
    cores = resources.cores or base.get("cores") or 1
    kwargs = {
        "cores": cores,
        "memory": resources.memory or base.get("memory") or "4GB",
        "processes": resources.processes or base.get("processes") or 1,
    }
    if resources.walltime:
        kwargs["walltime"] = resources.walltime
    if resources.gpus:
        per_worker = max(1, resources.gpus // kwargs["processes"])
        kwargs["worker_extra_args"] = [*(base.get("worker-extra-args") or []),
                                       "--resources", f"{GPU_RESOURCE}={per_worker}"]
        if kind == "slurm":
            kwargs["job_extra_directives"] = [*(base.get("job-extra-directives") or []),
                                              f"--gres=gpu:{resources.gpus}"]
        else:
            kwargs["resource_spec"] = (f"select=1:ncpus={cores}:mem={kwargs['memory']}"
                                       f":ngpus={resources.gpus}")
    cls = dask_jobqueue.SLURMCluster if kind == "slurm" else dask_jobqueue.PBSCluster
    return cls(**kwargs)


def _read_config(path: str) -> dict:
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            settings = yaml.safe_load(f) or {}
    except OSError as exc:
        raise EmcsError(f"cannot read the cluster configuration ({exc.strerror})", path) from None
    except yaml.YAMLError as exc:
        raise EmcsError(f"the cluster configuration is not valid YAML ({exc})", path) from None
    if not isinstance(settings, dict):
        raise EmcsError("the cluster configuration must be a YAML mapping (jobqueue: ...)", path)
    return settings


@contextlib.contextmanager
def connect(scheduler: str | None = None, cluster: str | None = None, *,
            resources: JobResources = JobResources(), config: str | None = None) -> Iterator:
    """A :class:`distributed.Client` for the duration of a ``with`` block.

    Parameters
    ----------
    scheduler : str, optional
        ``local`` / ``local:N`` (a local cluster of N worker processes, made
        and closed here) or the address of a running scheduler
        (``tcp://head:8786``; its workers stay up afterwards).
    cluster : {"slurm", "pbs"}, optional
        Start ``resources.jobs`` batch jobs of Dask workers with dask-jobqueue
        (:func:`jobqueue_cluster`); they are cancelled when the block ends.
    resources, config
        See :func:`jobqueue_cluster`.

    Raises
    ------
    EmcsError
        Both or neither of ``scheduler`` and ``cluster``, a bad value, or a
        scheduler that cannot be reached.
    """
    if (scheduler is None) == (cluster is None):
        raise EmcsError("give exactly one of scheduler and cluster", param="scheduler")
    Client = require("distributed", "dask", "a distributed run").Client

    with contextlib.ExitStack() as stack:
        if cluster is not None:
            made = stack.enter_context(jobqueue_cluster(cluster, resources, config))
            made.scale(jobs=resources.jobs)
            target = made
        else:
            kind, value = parse_scheduler(scheduler)
            target = stack.enter_context(local_cluster(value)) if kind == "local" else value
        try:
            # results (chunks of one large file) come straight from the workers, not via the scheduler
            client = stack.enter_context(Client(target, timeout="30s", direct_to_workers=True))
        except OSError as exc:
            raise EmcsError(f"cannot reach the Dask scheduler {scheduler or cluster} ({exc})",
                            param="scheduler") from None
        yield client


def network_resources(client) -> dict | None:
    """``{"GPU": 1}`` when a worker of ``client`` advertises a GPU, else None.

    A task that runs a network asks for these resources: on a cluster with
    GPU workers it then runs only there, one task per GPU at a time; on a
    cluster without them it runs on any worker (on its CPU, or on a GPU the
    worker finds itself with ``device="auto"``).
    """
    workers = worker_info(client).values()
    has_gpu = any(w.get("resources", {}).get(GPU_RESOURCE, 0) > 0 for w in workers)
    return {GPU_RESOURCE: 1} if has_gpu else None


def worker_info(client) -> dict:
    """Address -> description (``resources`` ...) of every worker of ``client``."""
    try:
        return client.scheduler_info(n_workers=-1)["workers"]  # some versions list 5 by default
    except TypeError:  # Dask before 2025 has no n_workers and lists them all
        return client.scheduler_info()["workers"]

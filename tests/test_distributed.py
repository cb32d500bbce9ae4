"""Distributed runs on a real ``distributed.LocalCluster`` (scheduler + 2 worker processes on loopback).

Every output is compared with the one a local run writes: containers byte for
byte (written at ``SOURCE_DATE_EPOCH``), stacks pixel for pixel.
"""

from __future__ import annotations

import json
import os
import signal
import zipfile

import numpy as np
import pytest

pytest.importorskip("distributed")

from emcs.distributed import JobResources, connect, map_files, parse_scheduler  # noqa: E402
from emcs.distributed.chunks import decode_chunked, encode_chunked  # noqa: E402
from emcs.errors import EmcsError  # noqa: E402
from emcs.io import read_stack, write_stack  # noqa: E402
from emcs.tcs.decode import decode_container  # noqa: E402
from emcs.tcs.encode import encode_stack  # noqa: E402


@pytest.fixture(scope="module")
def client():
    """A local cluster whose workers, like this process, write containers time-stamped at
    ``SOURCE_DATE_EPOCH`` (so that two runs write the same bytes)."""
    before = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = "1700000000"
    try:
        with connect("local:2") as c:
            yield c
    finally:
        if before is None:
            del os.environ["SOURCE_DATE_EPOCH"]
        else:
            os.environ["SOURCE_DATE_EPOCH"] = before


def _movie(path, T=33, H=24, W=20, seed=0):
    rng = np.random.default_rng(seed)
    write_stack(path, rng.poisson(30, (T, H, W)).astype(np.uint16))
    return str(path)


def _same_bytes(a, b) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def _same_stack(a, b) -> bool:
    (x, xs), (y, ys) = read_stack(a), read_stack(b)
    return x.dtype == y.dtype and np.array_equal(x, y) and xs.pixel_size == ys.pixel_size


def _parts(folder) -> list[str]:
    return [name for name in os.listdir(folder) if ".part" in name]


# --------------------------------------------------------------------------- options
def test_scheduler_and_cluster_options_are_checked():
    assert parse_scheduler("local:3") == ("local", 3)
    assert parse_scheduler("tls://head:8786") == ("address", "tls://head:8786")
    for bad in ("local:0", "local:x", "head"):
        with pytest.raises(EmcsError, match="scheduler must be"):
            parse_scheduler(bad)
    with pytest.raises(EmcsError, match="exactly one"):
        with connect():
            pass
    with pytest.raises(EmcsError, match="cluster must be one of"):
        with connect(cluster="lsf"):
            pass


def test_slurm_job_script_has_the_requested_resources(tmp_path):
    pytest.importorskip("dask_jobqueue")
    from emcs.distributed import jobqueue_cluster

    config = tmp_path / "jobqueue.yaml"
    config.write_text("jobqueue:\n  slurm:\n    queue: gpu\n    account: lab42\n"
                      "    cores: 2\n    memory: 4GB\n    walltime: '00:30:00'\n")
    wanted = JobResources(cores=8, memory="32GB", walltime="02:00:00", gpus=2, processes=2)
    with jobqueue_cluster("slurm", wanted, str(config)) as cluster:
        script = cluster.job_script()
    for line in ("#SBATCH -p gpu", "#SBATCH -A lab42", "#SBATCH --cpus-per-task=8", "#SBATCH --mem=30G",
                 "#SBATCH -t 02:00:00", "#SBATCH --gres=gpu:2"):
        assert line in script, script
    assert "--nworkers 2" in script and "--resources GPU=1" in script, script  # one GPU per worker
    with jobqueue_cluster("pbs", JobResources(cores=4, memory="8GB", gpus=1), str(config)) as cluster:
        assert "#PBS -l select=1:ncpus=4:mem=8GB:ngpus=1" in cluster.job_script()


# --------------------------------------------------------------------------- per file
def test_encode_many_files_as_locally_and_keep_going(client, tmp_path):
    movies = [_movie(tmp_path / f"m{i}.tif", seed=i) for i in range(3)]
    write_stack(tmp_path / "bad.tif", np.full((4, 8, 8), np.nan, np.float32))
    (tmp_path / "here").mkdir()
    (tmp_path / "there").mkdir()
    for m in movies:
        encode_stack(m, tmp_path / "here" / os.path.basename(m).replace(".tif", ".npz"), seed=5, pack="predictive")
    inputs = [*movies[:2], str(tmp_path / "bad.tif"), movies[2]]
    jobs = [((m, str(tmp_path / "there" / os.path.basename(m).replace(".tif", ".npz"))),
             {"seed": 5, "pack": "predictive"}) for m in inputs]
    seen = []
    outcomes = map_files(client, encode_stack, jobs, keep_going=True, progress=seen.append)
    assert len(seen) == 4 and [o.ok for o in outcomes] == [True, True, False, True]
    assert "bad.tif" in str(outcomes[2].error) and "NaN" in str(outcomes[2].error)
    assert outcomes[3].value["output"].endswith("m2.npz")
    for m in movies:
        name = os.path.basename(m).replace(".tif", ".npz")
        assert _same_bytes(tmp_path / "here" / name, tmp_path / "there" / name)
    assert not _parts(tmp_path / "there")
    with pytest.raises(EmcsError, match="NaN"):  # without keep_going the first error stops the run
        map_files(client, encode_stack, [(j[0], {**j[1], "force": True}) for j in jobs])


@pytest.mark.slow
def test_supersample_and_sim_recon_files_as_locally(client, tmp_path):
    from emcs.dlss.files import subsample_file, supersample_file
    from emcs.sim.files import sim_recon_file

    rng = np.random.default_rng(1)
    jobs = {"ss": [], "sr": []}
    for i in range(2):
        write_stack(tmp_path / f"full{i}.tif", rng.random((2, 48, 48)).astype(np.float32))
        subsample_file(tmp_path / f"full{i}.tif", tmp_path / f"sp{i}.tif", 4)
        write_stack(tmp_path / f"wf{i}.tif", rng.random((2, 32, 32)).astype(np.float32))
        supersample_file(tmp_path / f"sp{i}.tif", tmp_path / f"ss{i}.tif", device="cpu")
        sim_recon_file(tmp_path / f"wf{i}.tif", tmp_path / f"sr{i}.tif", device="cpu")
        jobs["ss"].append(((tmp_path / f"sp{i}.tif", tmp_path / f"ss{i}_d.tif"), {"device": "auto"}))
        jobs["sr"].append(((tmp_path / f"wf{i}.tif", tmp_path / f"sr{i}_d.tif"), {"device": "auto"}))
    for outcome in map_files(client, supersample_file, jobs["ss"]) + map_files(client, sim_recon_file, jobs["sr"]):
        assert outcome.ok, outcome.error
    for i in range(2):
        assert _same_stack(tmp_path / f"ss{i}.tif", tmp_path / f"ss{i}_d.tif")
        assert _same_stack(tmp_path / f"sr{i}.tif", tmp_path / f"sr{i}_d.tif")


def test_network_tasks_run_on_the_workers_that_advertise_a_gpu(tmp_path):
    """`dask worker --resources GPU=1`: a network task asks for the GPU resource when a worker
    has it (and runs there; a wrong request would never be scheduled), nothing otherwise;
    ``device="auto"`` resolves on the worker (here: no CUDA, so its CPU)."""
    from distributed import Client, LocalCluster

    from emcs.distributed.client import network_resources
    from emcs.dlss.files import subsample_file, supersample_file

    write_stack(tmp_path / "full.tif", np.random.default_rng(2).random((1, 48, 48)).astype(np.float32))
    subsample_file(tmp_path / "full.tif", tmp_path / "sp.tif", 4)
    local = supersample_file(tmp_path / "sp.tif", tmp_path / "local.tif", device="cpu")
    for resources, expected in (({"GPU": 1}, {"GPU": 1}), (None, None)):
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, resources=resources,
                          dashboard_address=None) as cluster, Client(cluster) as c:
            assert network_resources(c) == expected
            out = tmp_path / f"gpu{resources is not None}.tif"
            [outcome] = map_files(c, supersample_file, [((tmp_path / "sp.tif", out), {"device": "auto"})],
                                  resources=network_resources(c))
            assert outcome.ok, outcome.error
            assert outcome.value["device"] == local["device"] == "cpu"
            assert _same_stack(tmp_path / "local.tif", out)


@pytest.mark.slow
def test_interrupt_cancels_and_leaves_no_partial_outputs(client, tmp_path):
    names = []
    for i in range(5):
        encode_stack(_movie(tmp_path / f"m{i}.tif", T=40, H=48, W=48, seed=i), tmp_path / f"m{i}.npz", seed=i)
        names.append(tmp_path / f"m{i}.npz")
    jobs = [((n, tmp_path / f"d{i}.tif"), {"method": "gap-tv", "iters": 400, "device": "cpu"})
            for i, n in enumerate(names)]

    def interrupt(_n):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        map_files(client, decode_container, jobs, progress=interrupt)
    assert not _parts(tmp_path)
    written = [i for i in range(5) if (tmp_path / f"d{i}.tif").exists()]
    assert len(written) < 5
    for i in written:  # whatever was written is complete
        assert read_stack(tmp_path / f"d{i}.tif")[0].shape == (40, 48, 48)


# --------------------------------------------------------------------------- one big file
@pytest.mark.parametrize("pack", ["none", "predictive"])
def test_encode_one_movie_in_chunks_as_locally(client, tmp_path, pack):
    movie = _movie(tmp_path / "big.tif", T=95, H=32, W=24)
    encode_stack(movie, tmp_path / "local.npz", seed=11, pack=pack)
    seen = []
    res = encode_chunked(client, movie, tmp_path / "dist.npz", seed=11, pack=pack, groups_per_task=2,
                         in_flight=2, progress=seen.append)
    assert sum(seen) == res["n_measurements"] == 10
    assert _same_bytes(tmp_path / "local.npz", tmp_path / "dist.npz")


@pytest.mark.parametrize("method, blend", [("gap-tv", "on"), ("auto", "on"), ("auto", "off")])
def test_decode_one_container_in_chunks_as_locally(client, tmp_path, method, blend):
    encode_stack(_movie(tmp_path / "big.tif", T=75, H=32, W=24), tmp_path / "c.npz", seed=2,
                 pack="predictive")
    local = decode_container(tmp_path / "c.npz", tmp_path / "local.tif", method=method, iters=20,
                             device="cpu", static_blend=blend)
    seen = []
    res = decode_chunked(client, tmp_path / "c.npz", tmp_path / "dist.tif", method=method, iters=20,
                         groups_per_task=2, in_flight=2, progress=seen.append, static_blend=blend)
    assert sum(seen) == 8 and res["device"] == "cpu"
    assert res["static_blend"] == local["static_blend"] == ("on" if (method, blend) == ("auto", "on") else "off")
    assert _same_stack(tmp_path / "local.tif", tmp_path / "dist.tif")


def test_interrupting_a_chunked_run_leaves_no_output(client, tmp_path):
    movie = _movie(tmp_path / "big.tif", T=60)
    encode_stack(movie, tmp_path / "c.npz", seed=2)

    def interrupt(_n):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        encode_chunked(client, movie, tmp_path / "e.npz", seed=1, progress=interrupt)
    with pytest.raises(KeyboardInterrupt):
        decode_chunked(client, tmp_path / "c.npz", tmp_path / "d.tif", method="gap-tv", iters=2,
                       groups_per_task=1, progress=interrupt)
    assert sorted(os.listdir(tmp_path)) == ["big.tif", "c.npz"]


def test_decode_checksum_mismatch_leaves_no_output(client, tmp_path):
    encode_stack(_movie(tmp_path / "m.tif", T=20), tmp_path / "c.npz", seed=2)
    with zipfile.ZipFile(tmp_path / "c.npz") as zf:  # a byte inside the largest member's data
        info = max(zf.infolist(), key=lambda i: i.file_size)
    data = bytearray((tmp_path / "c.npz").read_bytes())
    data[info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size // 2] ^= 0xFF
    (tmp_path / "c.npz").write_bytes(bytes(data))
    with pytest.raises(EmcsError, match="checksum|corrupt"):
        decode_chunked(client, tmp_path / "c.npz", tmp_path / "d.tif", method="gap-tv", iters=2,
                       groups_per_task=1)
    assert not (tmp_path / "d.tif").exists() and not _parts(tmp_path)


@pytest.mark.slow
def test_a_killed_worker_does_not_change_the_output(tmp_path):
    encode_stack(_movie(tmp_path / "big.tif", T=80, H=48, W=48), tmp_path / "c.npz", seed=4)
    settings = {"method": "gap-tv", "iters": 150, "device": "cpu"}
    decode_container(tmp_path / "c.npz", tmp_path / "local.tif", **settings)
    with connect("local:2") as client:
        victims = list(client.run(os.getpid).values())
        killed = []

        def kill_once(_n):  # after the first chunk: kill a worker that is working on the next
            if not killed:
                os.kill(victims[0], signal.SIGKILL)
                killed.append(victims[0])

        decode_chunked(client, tmp_path / "c.npz", tmp_path / "dist.tif", groups_per_task=1, in_flight=4,
                       progress=kill_once, **settings)
        assert killed and victims[0] not in client.run(os.getpid).values()  # a fresh process took over
    assert _same_stack(tmp_path / "local.tif", tmp_path / "dist.tif")


# --------------------------------------------------------------------------- command line
def test_without_dask_the_options_say_which_extra_to_install(tmp_path, cli_subprocess):
    blocker = ("import importlib.abc, sys\n"
               "class NoDask(importlib.abc.MetaPathFinder):\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name.split('.')[0] in ('dask', 'distributed', 'dask_jobqueue'):\n"
               "            raise ModuleNotFoundError(name, name=name)\n"
               "sys.meta_path.insert(0, NoDask())\n")
    movie = _movie(tmp_path / "m.tif")
    run, _ = cli_subprocess("encode", movie, "--scheduler", "local:1", cwd=tmp_path, prelude=blocker)
    assert run.returncode == 2
    assert run.stderr.strip() == ("emcs: error: a distributed run needs the optional extra 'dask' "
                                  "(distributed is not installed): pip install 'emcs[dask]'")


def test_without_the_options_dask_is_not_loaded(tmp_path, cli_subprocess):
    movie = _movie(tmp_path / "m.tif")
    for args in (["encode", movie, "--quiet"], ["decode", str(tmp_path / "m.npz"), "-o", "d.tif", "--iters", "2", "--quiet"]):
        run, loaded = cli_subprocess(*args, cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        assert not [m for m in loaded if m.split(".")[0] in ("dask", "distributed")]
        assert "emcs.distributed" not in loaded


@pytest.mark.slow
def test_cli_encode_many_and_decode_on_a_local_cluster(tmp_path):
    from typer.testing import CliRunner

    from emcs.cli import app

    movies = [_movie(tmp_path / f"m{i}.tif", seed=i) for i in range(2)]
    write_stack(tmp_path / "bad.tif", np.full((4, 8, 8), np.nan, np.float32))
    runner = CliRunner()
    r = runner.invoke(app, ["encode", movies[0], str(tmp_path / "bad.tif"), movies[1], "--seed", "1",
                            "--scheduler", "local:2", "--keep-going", "--json"])
    assert r.exit_code == 2, r.stderr
    assert "skipped: " in r.stderr and "1 of 3 inputs failed" in r.stderr
    assert r.stderr.strip().splitlines()[-1].endswith("bad.tif: frames 0..3 contain NaN or infinite "
                                                      "values; emcs cannot encode them")
    assert [res["input"] for res in json.loads(r.stdout)["results"]] == movies
    assert (tmp_path / "m0.npz").exists() and (tmp_path / "m1.npz").exists()
    r = runner.invoke(app, ["decode", str(tmp_path / "m0.npz"), "-o", str(tmp_path / "d.tif"), "--method",
                            "gap-tv", "--iters", "5", "--scheduler", "local:1", "--quiet"])
    assert r.exit_code == 0, r.stderr
    decode_container(tmp_path / "m0.npz", tmp_path / "l.tif", method="gap-tv", iters=5, dtype="float32")
    assert _same_stack(tmp_path / "d.tif", tmp_path / "l.tif")
    r = runner.invoke(app, ["decode", str(tmp_path / "m0.npz"), str(tmp_path / "m1.npz"), "--method", "gap-tv",
                            "--iters", "5", "--dtype", "input", "--scheduler", "local:2", "--quiet", "--force"])
    assert r.exit_code == 0, r.stderr
    decode_container(tmp_path / "m1.npz", tmp_path / "l1.tif", method="gap-tv", iters=5)
    assert _same_stack(tmp_path / "m1.tif", tmp_path / "l1.tif")
    r = runner.invoke(app, ["supersample", str(tmp_path / "d.tif"), "-o", str(tmp_path / "s.tif"), "--factor",
                            "2", "--method", "bicubic", "--scheduler", "local:1", "--json"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["output"] == str(tmp_path / "s.tif")
    from emcs.dlss.files import supersample_file

    supersample_file(tmp_path / "d.tif", tmp_path / "s_local.tif", 2, method="bicubic")
    assert _same_stack(tmp_path / "s.tif", tmp_path / "s_local.tif")

"""Start-up of `emcs encode` (issue 16): whole-process wall and CPU seconds of short commands.

    python benchmarks/bench_startup.py [--base TREE] [--venv DIR] [-n 10]

Each command runs ``n`` times in a fresh process (after two warm-up runs),
with PYTHONPATH set to this tree and, with ``--base``, to another checkout of
emcs (e.g. ``git archive <commit> emcs | tar -x -C /tmp/base``); the trees
alternate run by run, so both see the same load. Wall = elapsed seconds of the
process, CPU = its user + system seconds (steadier than wall on a shared
machine). Bytecode is cached (in a temporary ``PYTHONPYCACHEPREFIX``), as in an
installed package. Prints one Markdown table: median and minimum of each.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import steal_jiffies, steal_since

ROOT = Path(__file__).resolve().parents[1]
IN_TREE = ["-c", "import sys; from emcs.cli import main; sys.argv[0] = 'emcs'; main()"]
COMMANDS = {
    "python -c pass": None,
    "emcs encode --help": ["encode", "--help"],
    "emcs encode tiny.tif -o out.npz --force --quiet": ["encode", "tiny.tif", "-o", "out.npz",
                                                         "--force", "--quiet"],
    "emcs encode tiny.tif -o out.npz --force": ["encode", "tiny.tif", "-o", "out.npz", "--force"],
    "emcs --help": ["--help"],
}



def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(command: list[str], env: dict, cwd: str) -> tuple[float, float]:
    cpu, wall = _children_cpu(), time.perf_counter()
    subprocess.run(command, env=env, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - wall, _children_cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="another checkout of emcs to compare with")
    parser.add_argument("--venv", help="a virtual environment with emcs installed from its wheel")
    parser.add_argument("-n", type=int, default=10, help="runs of each command per tree")
    args = parser.parse_args()
    trees = {"this tree": str(ROOT)} | ({"base": args.base} if args.base else {})
    work = tempfile.mkdtemp(prefix="emcs-startup-")
    envs, runners = {}, {}
    for name, tree in trees.items():
        env = dict(os.environ, PYTHONPATH=tree, PYTHONPYCACHEPREFIX=os.path.join(work, name))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        envs[name], runners[name] = env, (sys.executable, [sys.executable, *IN_TREE])
    if args.venv:
        name = "wheel (venv)"
        trees[name] = args.venv
        envs[name] = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        runners[name] = (os.path.join(args.venv, "bin", "python"), [os.path.join(args.venv, "bin", "emcs")])
    import numpy as np

    from emcs.io import write_stack

    write_stack(os.path.join(work, "tiny.tif"),
                np.random.default_rng(0).integers(0, 1000, (4, 32, 32)).astype(np.uint16))
    print(f"load average at the start: {os.getloadavg()[0]:.2f}")
    steal0 = steal_jiffies()
    print("| command | tree | wall median s | wall min s | CPU median s | CPU min s |")
    print("|---|---|---|---|---|---|")
    for label, words in COMMANDS.items():
        commands = {name: [python, "-c", "pass"] if words is None else [*emcs, *words]
                    for name, (python, emcs) in runners.items()}
        times = {name: [] for name in trees}
        for _ in range(2):
            for name in trees:
                _run(commands[name], envs[name], work)
        for _ in range(args.n):
            for name in trees:
                times[name].append(_run(commands[name], envs[name], work))
        for name in trees:
            wall, cpu = zip(*times[name], strict=True)
            print(f"| `{label}` | {name} | {statistics.median(wall):.3f} | {min(wall):.3f} | "
                  f"{statistics.median(cpu):.3f} | {min(cpu):.3f} |")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}; CPU steal time over the run: "
          f"{100 * steal_since(steal0):.0f} %")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()

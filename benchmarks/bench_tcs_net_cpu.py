"""The tcs-unfold network alone on the CPU: another tree's int8 copy against this tree's.

    python benchmarks/bench_tcs_net_cpu.py OLD_TREE [SIZE [REPEATS]]

OLD_TREE holds an ``emcs`` package (e.g. ``git archive main emcs | tar -x -C /tmp/old``);
its ``emcs/tcs/nets/unfold.py`` and ``int8.py`` are loaded beside this tree's (its ``int8.py``
resolves ``emcs.*`` imports in this tree). Both build their int8 inference copy from the
shipped weights; one SIZE x SIZE, B = 10 tile (default 512) is decoded by each in turn,
REPEATS times (default 5, after one warm-up each), at one thread, with the glibc settings
of ``emcs decode`` (:func:`emcs.nn.device.keep_freed_memory`). Prints the load average,
then per tree the CPU seconds (user + system) of every run and the largest and r.m.s.
difference from this tree's float32 output, relative to its range.
"""

from __future__ import annotations

import importlib.util
import json
import resource
import sys
from pathlib import Path


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def load_module(tree: str, name: str):
    path = Path(tree) / "emcs" / "tcs" / "nets" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"old_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(old_tree: str, size: int, repeats: int) -> None:
    import torch

    from emcs.nn.device import keep_freed_memory
    from emcs.nn.weights import load_model
    from emcs.tcs.nets import BUILDERS, int8
    from emcs.tcs.nets.api import list_models

    keep_freed_memory()
    torch.set_num_threads(1)
    info = next(i for i in list_models() if i.name == "tcs-unfold")
    net, _ = load_model(info.path, BUILDERS, device=torch.device("cpu"))
    old_unfold, old_int8 = load_module(old_tree, "unfold"), load_module(old_tree, "int8")
    old_net = old_unfold.UnfoldNet(**net.config)
    old_net.load_state_dict(net.state_dict())
    nets = {"old": old_int8.quantize_unfold(old_net.eval()), "new": int8.quantize_unfold(net)}
    gen = torch.Generator().manual_seed(0)
    masks = (torch.rand(1, 10, size, size, generator=gen) > 0.5).float()
    y = (torch.rand(1, 10, size, size, generator=gen) * 0.5 * masks).sum(1) + 0.5
    with torch.inference_mode():
        ref = net(y, masks)
        outs = {k: f(y, masks) for k, f in nets.items()}
        runs = {k: [] for k in nets}
        for _ in range(repeats):
            for k, f in nets.items():
                c0 = cpu_seconds()
                f(y, masks)
                runs[k].append(round(cpu_seconds() - c0, 3))
    span = float(ref.max() - ref.min())
    print(json.dumps({"load": open("/proc/loadavg").read().split()[:3], "size": size}))
    for k, out in outs.items():
        diff = (out - ref).abs()
        print(json.dumps({"tree": k, "cpu_s": runs[k], "median": sorted(runs[k])[len(runs[k]) // 2],
                          "maxdiff_rel": round(float(diff.max()) / span, 5),
                          "rmsdiff_rel": round(float(diff.square().mean().sqrt()) / span, 6)}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 512,
         int(sys.argv[3]) if len(sys.argv) > 3 else 5)

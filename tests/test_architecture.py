"""The architecture rules of emcs (docs/architecture.md), held by tests.

The import graph is read from the source with :mod:`ast` (nothing is
imported): one arrow per ``import emcs...`` / ``from emcs... import ...``
(relative imports resolved; ``from pkg import name`` points at the submodule
``pkg.name`` when there is one, else at ``pkg``), and one per
``importlib.import_module("emcs...")`` with a constant name. An import inside
a function body is *lazy*; every other one (module body, class body, ``if`` /
``try`` blocks at module level) is *module-level*.

Every rule counts every arrow, lazy ones included. A lazy import keeps a
heavy module (torch, abTEM) from loading before it is needed, and it hides a
circle from the interpreter (it runs after the modules have loaded), but it is
still a dependency: two modules that import each other, lazily or not, can be
neither understood nor tested apart. So circles are looked for between modules
and between parts (``io``, ``tcs``, ``compare`` ...), lazy arrows included.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from functools import cache
from pathlib import Path

import numpy as np

PACKAGE = Path(__file__).resolve().parents[1] / "emcs"

#: the independent capabilities: none imports another
CAPABILITIES = ("tcs", "dlss", "sim")
#: what a capability may never import, besides the other capabilities
ABOVE_CAPABILITIES = ("simulate", "compare", "train", "demo", "watch", "distributed", "cli")
#: the only parts that may import the data engine ``emcs.simulate``
SIMULATE_USERS = ("cli", "train")
#: the only parts ``emcs.io`` may import ("emcs" is the root package: the version)
IO_MAY_IMPORT = ("io", "errors", "emcs")
#: the longest module allowed, in lines
MAX_LINES = 500
#: modules ``emcs encode`` must not load
HEAVY = ("torch", "scipy", "skimage")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _part(module: str) -> str:
    """``emcs.tcs.nets.unfold`` -> ``tcs``; the root package ``emcs`` -> ``emcs``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _target(name: str, attribute: str | None = None) -> str:
    """The emcs module an import points at (a submodule when ``attribute`` is one)."""
    if attribute and f"{name}.{attribute}" in _modules():
        return f"{name}.{attribute}"
    return name


class _Imports(ast.NodeVisitor):
    """Collect (imported name, lazy) of one module."""

    def __init__(self, module: str, is_package: bool):
        self.package = module if is_package else module.rpartition(".")[0]
        self.found: list[tuple[str, bool]] = []
        self._depth = 0  # function bodies entered

    def _function(self, node) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((alias.name, self._depth > 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")[: len(self.package.split(".")) - node.level + 1]
            name = ".".join(base + ([node.module] if node.module else []))
        else:
            name = node.module or ""
        for alias in node.names:
            self.found.append((_target(name, alias.name), self._depth > 0))

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if called in ("import_module", "__import__") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                self.found.append((arg.value, True))  # runs when called: lazy
        self.generic_visit(node)


@cache
def _arrows() -> tuple[tuple[str, str, bool], ...]:
    """(importer, imported, lazy) for every import in emcs; imported may be third-party."""
    out = []
    for module, path in _modules().items():
        visitor = _Imports(module, path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        out += [(module, name, lazy) for name, lazy in visitor.found]
    return tuple(out)


def _emcs_arrows() -> list[tuple[str, str]]:
    """Arrows between emcs modules (imported name reduced to the module that holds it)."""
    mods = _modules()
    out = []
    for src, dst, _lazy in _arrows():
        if dst == "emcs" or dst.startswith("emcs."):
            while dst not in mods:  # ``from emcs.x.y import z`` with z an attribute
                dst = dst.rpartition(".")[0]
            out.append((src, dst))
    return out


def _violations(check) -> list[str]:
    """``importer -> imported`` for the emcs arrows (lazy included) that ``check(src, dst)`` flags."""
    return sorted({f"{src} -> {dst}" for src, dst in _emcs_arrows() if check(_part(src), _part(dst))})


def _circles(edges: list[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components with more than one node, or a node importing itself."""
    graph = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan (the graph is small: recursion is fine)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                found.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            connect(v)
    return found


# --------------------------------------------------------------------------- layers
def test_io_imports_no_torch_and_no_capability():
    bad = _violations(lambda a, b: a == "io" and b not in IO_MAY_IMPORT)
    bad += sorted(f"{src} -> {dst}" for src, dst, _ in _arrows()
                  if _part(src) == "io" and dst.split(".")[0] == "torch")
    assert not bad, "emcs.io may import only emcs.io and emcs.errors:\n" + "\n".join(bad)


def test_nothing_imports_cli():
    # emcs/__main__.py (``python -m emcs``) is the command's entry point, as the console script is
    bad = _violations(lambda a, b: b == "cli" and a not in ("cli", "__main__"))
    assert not bad, "only emcs.cli and the entry point emcs.__main__ import emcs.cli:\n" + "\n".join(bad)


def test_capabilities_import_neither_each_other_nor_what_composes_them():
    bad = _violations(lambda a, b: a in CAPABILITIES and b != a
                      and (b in CAPABILITIES or b in ABOVE_CAPABILITIES))
    assert not bad, ("tcs, dlss and sim import neither each other nor "
                     f"{', '.join(ABOVE_CAPABILITIES)}:\n" + "\n".join(bad))


def test_only_cli_and_train_import_simulate():
    bad = _violations(lambda a, b: b == "simulate" and a not in (*SIMULATE_USERS, "simulate"))
    assert not bad, "only emcs.cli and emcs.train import emcs.simulate:\n" + "\n".join(bad)


def test_compare_imports_no_capability():
    bad = _violations(lambda a, b: a == "compare" and (b in CAPABILITIES or b in ABOVE_CAPABILITIES
                                                        and b != "compare"))
    assert not bad, "emcs.compare imports no capability:\n" + "\n".join(bad)


def test_only_cli_imports_the_demo():
    bad = _violations(lambda a, b: b == "demo" and a not in ("cli", "demo"))
    assert not bad, "emcs.demo composes capabilities; only emcs.cli imports it:\n" + "\n".join(bad)


def test_only_cli_imports_distributed_and_dask_loads_lazily():
    bad = _violations(lambda a, b: b == "distributed" and a not in ("cli", "distributed"))
    bad += sorted(f"{src} -> {dst}" + ("" if lazy else " (module level)") for src, dst, lazy in _arrows()
                  if dst.split(".")[0] in ("dask", "distributed", "dask_jobqueue") and not lazy
                  or dst.split(".")[0] in ("distributed", "dask_jobqueue") and _part(src) != "distributed")
    assert not bad, ("emcs.distributed composes capabilities; only emcs.cli imports it; Dask is imported "
                     "only inside functions, its cluster modules only in emcs.distributed:\n"
                     + "\n".join(bad))


# --------------------------------------------------------------------------- circles
def test_no_import_circles_between_modules():
    circles = _circles(_emcs_arrows())
    assert not circles, "import circles (lazy imports included):\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_no_import_circles_between_parts():
    edges = [(_part(a), _part(b)) for a, b in _emcs_arrows() if _part(a) != _part(b)]
    circles = _circles(edges)
    assert not circles, "parts importing each other (lazy imports included):\n" + "\n".join(
        " <-> ".join(c) for c in circles)


# --------------------------------------------------------------------------- size
def test_no_module_over_500_lines():
    long = {m: n for m, p in _modules().items()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


# --------------------------------------------------------------------------- light encode
def test_encode_loads_neither_torch_nor_scipy_nor_skimage(tmp_path, cli_subprocess):
    from emcs.io import write_stack

    movie = tmp_path / "movie.tif"
    frames = np.random.default_rng(0).integers(0, 100, (12, 16, 16), dtype=np.uint16)
    write_stack(movie, frames)
    run, loaded = cli_subprocess("encode", movie, "-o", tmp_path / "m.npz", "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "m.npz").exists()
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not heavy, f"emcs encode loaded {heavy[:10]}"


def test_the_reader_sees_module_level_and_lazy_imports():
    """A rule is only as good as the graph it reads: check two known arrows."""
    arrows = {(src, dst): lazy for src, dst, lazy in _arrows()}
    assert arrows[("emcs.cli.dlss", "emcs.cli._app")] is False
    assert arrows[("emcs.cli.dlss", "emcs.dlss.files")] is True

"""The wheel is the product: it carries the networks, their cards and the demo movie; the core
install needs no extra; missing or damaged weights say so and how to fix it.

The end-to-end check (the wheel installed in a fresh venv, every command run from an empty
folder) is ``.ci/wheel_check``, which ``.ci/run`` calls.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import emcs
from emcs.errors import EmcsError
from emcs.examples import EXAMPLES_ENV, example_path, examples_dir
from emcs.extras import EXTRAS, REINSTALL, require
from emcs.nn import weights
from emcs.nn.weights import (
    MODELS_ENV,
    find_weights,
    list_weights,
    load_model,
    model_dirs,
    models_dir,
)

PACKAGE = Path(emcs.__file__).resolve().parent
ROOT = PACKAGE.parent
SHIPPED_NETWORKS = ("tcs-unfold", "tcs-unfold-any", "tcs-tcsdl", "dlss-unet-s4-10", "vdlsim-16", "vdlsim-32", "vdlsim-64", "vdlsim-raw")
EXAMPLES = ("au_movie.tif", "au_movie_truth.tif")
#: what only an extra installs; no core command may need it
EXTRA_MODULES = ("abtem", "ase", "dask", "distributed", "dask_jobqueue", "rsciio")


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


# ---------------------------------------------------------------- the wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """The wheel built from a clean copy of this checkout (no stale build/ can leak in)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(PACKAGE, src / "emcs", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp / "dist"), str(src)], check=True, capture_output=True, timeout=300)
    (path,) = (tmp / "dist").glob("emcs-*.whl")
    with zipfile.ZipFile(path) as zf:
        yield zf


@pytest.mark.slow
def test_wheel_carries_networks_cards_and_demo_movie(wheel):
    names = set(wheel.namelist())
    for net in SHIPPED_NETWORKS:
        for suffix in (".safetensors", ".json"):
            member = f"emcs/models/{net}{suffix}"
            assert member in names, member
            assert wheel.read(member) == (models_dir() / f"{net}{suffix}").read_bytes(), member
    for name in (*EXAMPLES, "README.md"):  # the README holds the movie's origin and licence
        assert f"emcs/examples/{name}" in names, name


@pytest.mark.slow
def test_wheel_has_every_module_and_nothing_from_outside_the_package(wheel):
    names = set(wheel.namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py")
               if "__pycache__" not in p.parts}
    assert modules - names == set(), "subpackages missing from the wheel"
    top = {n.split("/")[0] for n in names}
    assert top == {"emcs", f"emcs-{emcs.__version__}.dist-info"}, top


@pytest.mark.slow
def test_wheel_metadata_keeps_the_extras_out_of_the_core(wheel):
    meta = wheel.read(f"emcs-{emcs.__version__}.dist-info/METADATA").decode()
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines()
                if line.startswith("Requires-Dist:")]
    core = [r for r in requires if "extra ==" not in r]
    assert any(r.startswith("torch") for r in core)
    for heavy in ("abtem", "ase", "dask", "rosettasciio"):
        assert not any(re.match(rf"{heavy}\b", r) for r in core), (heavy, core)
    assert any(r.startswith("abtem") and 'extra == "sim"' in r for r in requires)


# ---------------------------------------------------------------- extras


def test_pyproject_extras_are_the_ones_emcs_names():
    extras = _pyproject()["project"]["optional-dependencies"]
    assert set(extras) == {*EXTRAS, "test"}
    assert extras["all"] == ["emcs[" + ",".join(e for e in EXTRAS if e != "all") + "]"]
    assert any(r.startswith("emcs[") for r in extras["test"]), "[test] runs the whole suite"


def test_every_extra_named_in_a_message_exists():
    """A message "pip install 'emcs[X]'" anywhere in the package or README names a real extra."""
    texts = [p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py")]
    texts.append((ROOT / "README.md").read_text(encoding="utf-8"))
    named = {m for text in texts for group in re.findall(r"emcs\[([\w,]+)\]", text)
             for m in group.split(",")}
    assert named <= {*EXTRAS, "test"}, named - {*EXTRAS, "test"}


def test_require_names_the_extra_in_one_line():
    assert require("json", "sim", "this").__name__ == "json"
    with pytest.raises(EmcsError) as err:
        require("emcs_no_such_module", "formats", "reading DM4 files")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("reading DM4 files needs the optional extra 'formats'")
    assert msg.endswith("pip install 'emcs[formats]'")
    with pytest.raises(ValueError):
        require("json", "no-such-extra", "this")


CORE_RUN = r"""
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))

class NoExtras(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: core install)", name=name)

sys.meta_path.insert(0, NoExtras())
from emcs.cli import main
for line in sys.argv[2:]:
    sys.argv = ["emcs", *line.split("|")]
    try:
        main()
    except SystemExit as exc:
        if exc.code:
            raise SystemExit(f"emcs {' '.join(sys.argv[1:])}: exit {exc.code}")
"""


def _json_objects(text: str) -> list[dict]:
    """The JSON objects printed one after another (each command's --json report)."""
    decoder, objects, i = json.JSONDecoder(), [], 0
    while (i := text.find("{", i)) >= 0:
        obj, i = decoder.raw_decode(text, i)
        objects.append(obj)
    return objects


@pytest.mark.slow
def test_core_commands_run_without_any_extra(tmp_path):
    """encode, info, decode (network), supersample, sim-recon and compare with abTEM, ASE, Dask
    and RosettaSciIO unimportable, as in a core install."""
    from emcs.io import write_stack

    rng = np.random.default_rng(0)
    clean = np.full((10, 32, 32), 20.0) + 10 * np.sin(np.arange(32) / 3)[None, None, :]
    write_stack(tmp_path / "m.tif", rng.poisson(clean).astype(np.uint8), pixel_size=0.3)
    write_stack(tmp_path / "truth.tif", clean.astype(np.float32), pixel_size=0.3)
    commands = [
        "encode|m.tif|-o|m.npz|--quiet",
        "info|m.npz|--json",
        "decode|m.npz|-o|rec.tif|--quiet|--json",
        "subsample|truth.tif|--factor|4|-o|sparse.tif|--quiet",
        "supersample|sparse.tif|-o|full.tif|--quiet",
        "sim-recon|truth.tif|-o|sr.tif|--quiet",
        "compare|rec.tif|m.tif|--truth|truth.tif|--container|m.npz|--json",
    ]
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    env.pop(MODELS_ENV, None)
    proc = subprocess.run([sys.executable, "-c", CORE_RUN, ",".join(EXTRA_MODULES), *commands],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    decoded = [r for r in _json_objects(proc.stdout) if "decoders" in r]
    assert decoded and decoded[0]["decoders"] == ["net:tcs-unfold"], proc.stdout[-2000:]
    for name in ("rec.tif", "full.tif", "sr.tif"):
        assert (tmp_path / name).is_file(), name


# ---------------------------------------------------------------- where the networks are


def test_models_dir_is_the_package_folder_with_every_shipped_network():
    assert models_dir() == PACKAGE / "models"
    for net in SHIPPED_NETWORKS:
        assert find_weights(net) == models_dir() / f"{net}.safetensors"
        assert (models_dir() / f"{net}.json").is_file()


def test_emcs_models_folders_come_first_and_override_by_name(tmp_path, monkeypatch):
    mine, lab = tmp_path / "mine", tmp_path / "lab"
    for folder in (mine, lab):
        folder.mkdir()
        (folder / "tcs-unfold.safetensors").write_bytes(b"x")
    (lab / "tcs-extra.safetensors").write_bytes(b"x")
    monkeypatch.setenv(MODELS_ENV, os.pathsep.join([str(mine), str(lab)]))
    assert model_dirs() == [mine, lab, models_dir()]
    assert find_weights("tcs-unfold") == mine / "tcs-unfold.safetensors"
    assert find_weights("tcs-tcsdl.safetensors") == models_dir() / "tcs-tcsdl.safetensors"
    assert list_weights("tcs-*") == [lab / "tcs-extra.safetensors", models_dir() / "tcs-tcsdl.safetensors",
                                     models_dir() / "tcs-unfold-any.safetensors", mine / "tcs-unfold.safetensors"]


def test_missing_weights_say_so_and_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "models_dir", lambda: tmp_path / "emcs" / "models")
    with pytest.raises(EmcsError) as err:
        find_weights("vdlsim-32")
    msg = str(err.value)
    assert "vdlsim-32.safetensors: no such weights file" in msg
    assert REINSTALL in msg and MODELS_ENV in msg
    with pytest.raises(EmcsError, match=r"no network weights tcs-\*\.safetensors in .*reinstall"):
        list_weights("tcs-*")


def _damaged_copy(folder: Path, damage) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in (".safetensors", ".json"):
        shutil.copy2(models_dir() / f"vdlsim-16{suffix}", folder / f"vdlsim-16{suffix}")
    path = folder / "vdlsim-16.safetensors"
    damage(path)
    return path


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


def _garbage_with_its_checksum(path: Path) -> None:
    path.write_bytes(b"not safetensors at all")
    card_file = path.with_suffix(".json")
    card = json.loads(card_file.read_text())
    card["sha256"] = weights.file_sha256(path)
    card_file.write_text(json.dumps(card))


@pytest.mark.parametrize("damage, problem", [
    (_truncate, "do not match the checksum"),
    (_garbage_with_its_checksum, "not a readable safetensors file"),
    (lambda p: p.with_suffix(".json").unlink(), "model card vdlsim-16.json is missing"),
    (lambda p: p.with_suffix(".json").write_text("{"), "model card is not valid JSON"),
    (lambda p: p.unlink(), "no such weights file"),
])
def test_damaged_shipped_weights_say_so_and_how_to_fix_it(tmp_path, monkeypatch, damage, problem):
    from emcs.sim.net import BUILDERS

    shipped = tmp_path / "site-packages" / "emcs" / "models"
    monkeypatch.setattr(weights, "models_dir", lambda: shipped)
    path = _damaged_copy(shipped, damage)
    with pytest.raises(EmcsError) as err:
        load_model(path, BUILDERS)
    msg = str(err.value)
    assert problem in msg and "vdlsim-16" in msg and "\n" not in msg
    assert REINSTALL in msg
    # the user's own file: the same problem, but reinstalling emcs would not fix it
    own = _damaged_copy(tmp_path / "my-nets", damage)
    with pytest.raises(EmcsError) as err:
        load_model(own, BUILDERS)
    assert problem in str(err.value) and "reinstall" not in str(err.value)


# ---------------------------------------------------------------- the demo movie


def test_example_movie_is_package_data():
    for name in EXAMPLES:
        assert example_path(name) == PACKAGE / "examples" / name
    assert example_path("au_movie.tif").stat().st_size > 100_000


def test_emcs_examples_replaces_the_shipped_folder(tmp_path, monkeypatch):
    (tmp_path / "au_movie.tif").write_bytes(b"x")
    monkeypatch.setenv(EXAMPLES_ENV, str(tmp_path))
    assert examples_dir() == tmp_path
    assert example_path("au_movie.tif") == tmp_path / "au_movie.tif"
    with pytest.raises(EmcsError, match=rf"au_movie_truth.tif: the example file is missing; .*{EXAMPLES_ENV}"):
        example_path("au_movie_truth.tif")


def test_missing_shipped_example_says_how_to_fix_it(tmp_path, monkeypatch):
    import emcs.examples

    monkeypatch.delenv(EXAMPLES_ENV, raising=False)
    monkeypatch.setattr(emcs.examples, "examples_dir", lambda: tmp_path)
    with pytest.raises(EmcsError) as err:
        example_path("au_movie.tif")
    assert str(err.value) == f"{tmp_path / 'au_movie.tif'}: the example file is missing; {REINSTALL}"

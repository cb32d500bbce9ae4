"""`emcs watch`: movies written slowly while the watcher runs, the journal, verify, delete, stop.

Containers are compared with a one-shot ``encode_stack`` of the finished movie
(same seed): every zip member byte for byte, and the metadata without its
``created`` time stamp (the only field that depends on when the file was made).
"""

from __future__ import annotations

import concurrent.futures as cf
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from emcs.cli import app
from emcs.errors import EmcsError
from emcs.io import write_stack
from emcs.tcs.encode import encode_stack
from emcs.watch import (
    JOURNAL_NAME,
    Journal,
    WatchSettings,
    encode_one,
    incomplete_reason,
    stop_on_signals,
    watch_folder,
)
from emcs.watch.journal import folder_lock
from emcs.watch.task import Stopped

runner = CliRunner()
FRAMES = np.random.default_rng(1).integers(0, 1000, (10, 24, 20), dtype=np.uint16)


# --------------------------------------------------------------------------- helpers
def _run(*args):
    return runner.invoke(app, ["watch", *map(str, args)])


def _records(out: Path) -> list[dict]:
    path = out / JOURNAL_NAME
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _statuses(out: Path) -> list[tuple[str, str]]:
    return [(r["key"], r["status"]) for r in _records(out)]


def _members(path: Path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _meta(members: dict) -> dict:
    meta_member = next(name for name in members if name.startswith("meta"))
    raw = np.load(io.BytesIO(members[meta_member]), allow_pickle=False)
    meta = json.loads(raw.tobytes().decode())
    meta.pop("created")
    return meta


def assert_same_as_one_shot(container: Path, movie: Path, tmp_path: Path, **options) -> None:
    """``container`` equals a one-shot encode of ``movie``: members byte for byte, meta but ``created``."""
    reference = tmp_path / "one-shot" / container.name
    reference.parent.mkdir(exist_ok=True)
    encode_stack(movie, reference, **options)
    got, want = _members(container), _members(reference)
    assert sorted(got) == sorted(want)
    assert _meta(got) == _meta(want)
    for name in got:
        if not name.startswith("meta"):
            assert got[name] == want[name], name


def _settle_old(*paths: Path) -> None:
    """Date files back by a minute, as if written long ago (a restart finds them finished)."""
    for p in paths:
        t = time.time() - 60
        os.utime(p, (t, t))


class Watching:
    """Run ``watch_folder`` in a thread; ``records`` collects what it reports."""

    def __init__(self, settings: WatchSettings):
        self.records: list[dict] = []
        self.stop = threading.Event()
        self.summary: dict = {}
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(settings,), daemon=True)
        self.thread.start()

    def _run(self, settings):
        try:
            self.summary = watch_folder(settings, on_record=self.records.append, stop=self.stop)
        except BaseException as exc:  # reported by join()
            self.error = exc

    def join(self, timeout=20.0):
        self.thread.join(timeout)
        self.stop.set()
        self.thread.join(5)
        if self.error is not None:
            raise self.error
        return self.summary


# --------------------------------------------------------------------------- slow writers
def test_tiff_written_slowly_is_encoded_once_finished_and_equals_a_one_shot_encode(tmp_path):
    movies, out = tmp_path / "in", tmp_path / "out"
    movies.mkdir()
    movie = movies / "run1.tif"
    watching = Watching(WatchSettings(str(movies), out=str(out), B=4, seed=7, poll=0.05,
                                      settle=1.0, max_files=1))
    container = out / "run1.npz"
    with tifffile.TiffWriter(movie) as tif:  # page by page, like detector software
        for frame in FRAMES:
            tif.write(frame, contiguous=False, metadata=None)
            tif._fh.flush()
            time.sleep(0.05)
            assert not container.exists(), "encoded before the writer finished"
    summary = watching.join()
    assert summary["encoded"] == 1
    assert [r["status"] for r in watching.records] == ["waiting", "encoded"]
    assert watching.records[-1]["shape"] == list(FRAMES.shape)
    assert_same_as_one_shot(container, movie, tmp_path, B=4, seed=7)


def test_mrc_whose_header_promises_more_frames_is_not_encoded_until_they_are_written(tmp_path):
    movies, out = tmp_path / "in", tmp_path / "out"
    movies.mkdir()
    finished = tmp_path / "finished.mrc"
    with mrcfile.new(finished) as mrc:
        mrc.set_data(FRAMES.astype(np.int16))
    raw = finished.read_bytes()
    header, frame_bytes = 1024, FRAMES[0].size * 2
    movie = movies / "run2.mrc"
    # settle is shorter than the writer's pauses: only the header check holds the encode back
    watching = Watching(WatchSettings(str(movies), out=str(out), B=3, seed=5, poll=0.03,
                                      settle=0.05, max_files=1))
    container = out / "run2.npz"
    with open(movie, "wb") as f:
        f.write(raw[:header])
        for k in range(len(FRAMES)):
            f.write(raw[header + k * frame_bytes: header + (k + 1) * frame_bytes])
            f.flush()
            time.sleep(0.3 if k in (2, 6) else 0.01)
            assert not container.exists(), "a truncated MRC was encoded"
    summary = watching.join()
    assert summary["encoded"] == 1 and summary["incomplete"] >= 1
    incomplete = [r for r in _records(out) if r["status"] == "incomplete"]
    assert "header promises 10 frames" in incomplete[0]["error"]
    assert_same_as_one_shot(container, movie, tmp_path, B=3, seed=5)


# --------------------------------------------------------------------------- readiness
def test_incomplete_reason_reads_the_header_against_the_size(tmp_path):
    good = tmp_path / "a.mrc"
    with mrcfile.new(good) as mrc:
        mrc.set_data(FRAMES.astype(np.float32))
    assert incomplete_reason(str(good)) is None
    raw = good.read_bytes()
    (tmp_path / "short.mrc").write_bytes(raw[:-7])
    (tmp_path / "long.mrc").write_bytes(raw + bytes(FRAMES[0].size * 4))
    (tmp_path / "tiny.mrc").write_bytes(raw[:100])
    assert "file has" in incomplete_reason(str(tmp_path / "short.mrc"))
    assert "file has" in incomplete_reason(str(tmp_path / "long.mrc"))
    assert "less than an MRC header" in incomplete_reason(str(tmp_path / "tiny.mrc"))
    tifffile.imwrite(tmp_path / "a.tif", FRAMES, compression="zlib")
    assert incomplete_reason(str(tmp_path / "a.tif")) is None
    raw = (tmp_path / "a.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(raw[: len(raw) // 2])
    assert incomplete_reason(str(tmp_path / "cut.tif")) is not None
    assert incomplete_reason(str(tmp_path / "x.npy")) is None  # other formats: opening decides


def test_done_marker_replaces_the_settle_time(tmp_path):
    write_stack(tmp_path / "m.tif", FRAMES)
    _settle_old(tmp_path / "m.tif")
    out = tmp_path / "out"
    r = _run(tmp_path, "-o", out, "--done-marker", ".done", "--once")
    assert r.exit_code == 0, r.stderr
    assert not (out / "m.npz").exists() and "waiting for m.tif" in r.stderr
    (tmp_path / "m.tif.done").touch()
    r = _run(tmp_path, "-o", out, "--done-marker", ".done", "--once", "--settle", 1e6)
    assert r.exit_code == 0, r.stderr
    assert (out / "m.npz").exists() and _statuses(out) == [("m.tif", "encoded")]


def test_once_skips_a_movie_still_being_written(tmp_path):
    write_stack(tmp_path / "fresh.tif", FRAMES)  # modified just now: not settled
    r = _run(tmp_path, "--once", "--settle", 30)
    assert r.exit_code == 0, r.stderr
    assert not (tmp_path / "fresh.npz").exists() and _records(tmp_path) == []


# --------------------------------------------------------------------------- journal
def test_restart_neither_encodes_twice_nor_skips_and_a_changed_movie_is_encoded_again(tmp_path):
    out = tmp_path / "out"
    for name in ("a.tif", "b.mrc"):
        write_stack(tmp_path / name, FRAMES[:6] if name == "b.mrc" else FRAMES)
    _settle_old(tmp_path / "a.tif", tmp_path / "b.mrc")
    r = _run(tmp_path, "-o", out, "--once", "-B", 5, "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["encoded"] == 2
    first = (out / "a.npz").stat().st_mtime_ns
    r = _run(tmp_path, "-o", out, "--once", "-B", 5, "--json")
    assert r.exit_code == 0 and "encoded" not in json.loads(r.stdout)
    assert (out / "a.npz").stat().st_mtime_ns == first
    write_stack(tmp_path / "a.tif", FRAMES[:7], force=True)  # a new take under the same name
    _settle_old(tmp_path / "a.tif")
    r = _run(tmp_path, "-o", out, "--once", "-B", 5)
    assert r.exit_code == 0, r.stderr
    assert "encoded a.tif" in r.stderr and "b.mrc" not in r.stderr
    assert _statuses(out)[-1] == ("a.tif", "encoded") and len(_records(out)) == 3
    assert _records(out)[-1]["shape"][0] == 7


def test_a_failed_movie_is_logged_and_retried_only_once_it_changes(tmp_path):
    bad = FRAMES.astype(np.float32)
    bad[3, 2, 2] = np.nan
    write_stack(tmp_path / "nan.tif", bad)
    _settle_old(tmp_path / "nan.tif")
    r = _run(tmp_path, "--once")
    assert r.exit_code == 0
    assert "FAILED nan.tif" in r.stderr and "NaN" in r.stderr
    r = _run(tmp_path, "--once", "-q")
    assert r.stderr == "" and len(_records(tmp_path)) == 1
    write_stack(tmp_path / "nan.tif", FRAMES.astype(np.float32), force=True)
    _settle_old(tmp_path / "nan.tif")
    r = _run(tmp_path, "--once")
    assert r.exit_code == 0 and "encoded nan.tif" in r.stderr
    assert (tmp_path / "nan.npz").exists()


def test_a_container_left_by_a_run_killed_before_journaling_is_adopted(tmp_path):
    write_stack(tmp_path / "m.tif", FRAMES)
    _settle_old(tmp_path / "m.tif")
    encode_stack(tmp_path / "m.tif", tmp_path / "m.npz", B=5)
    before = (tmp_path / "m.npz").stat().st_mtime_ns
    summary = watch_folder(WatchSettings(str(tmp_path), once=True))
    assert summary["encoded"] == 1 and (tmp_path / "m.npz").stat().st_mtime_ns == before
    assert _records(tmp_path)[0]["adopted"] is True
    # a foreign file in the way is never overwritten
    write_stack(tmp_path / "n.tif", FRAMES)
    _settle_old(tmp_path / "n.tif")
    write_stack(tmp_path / "other.tif", FRAMES[:3])
    encode_stack(tmp_path / "other.tif", tmp_path / "n.npz")
    watch_folder(WatchSettings(str(tmp_path), once=True))
    assert _statuses(tmp_path)[-1] == ("n.tif", "failed")


def test_journal_skips_a_torn_last_line(tmp_path):
    journal = Journal(str(tmp_path))
    journal.append({"key": "a.tif", "status": "encoded", "size": 1, "mtime_ns": 2})
    with open(journal.path, "a") as f:
        f.write('{"key": "b.tif", "sta')
    again = Journal(str(tmp_path))
    assert again.last("a.tif")["status"] == "encoded" and again.torn_lines == 1


def test_one_watcher_per_output_folder(tmp_path):
    with folder_lock(str(tmp_path)), pytest.raises(EmcsError, match="another emcs watch"):
        watch_folder(WatchSettings(str(tmp_path), once=True))


# --------------------------------------------------------------------------- verify / delete
def test_verify_then_delete_removes_only_verified_movies(tmp_path, monkeypatch):
    movies, out = tmp_path / "in", tmp_path / "out"
    movies.mkdir()
    for name in ("good.tif", "bad.tif"):
        write_stack(movies / name, FRAMES)
    (movies / "good.tif.done").touch()
    (movies / "bad.tif.done").touch()
    import emcs.watch.task as task

    real_validate = task.validate
    monkeypatch.setattr(task, "validate", lambda p: ["checksum mismatch"] if "bad" in str(p)
                        else real_validate(p))
    r = _run(movies, "-o", out, "--done-marker", ".done", "--delete-after-verify", "--once")
    assert r.exit_code == 0, r.stderr
    assert not (movies / "good.tif").exists() and not (movies / "good.tif.done").exists()
    assert (movies / "bad.tif").exists() and "VERIFY FAILED bad.tif" in r.stderr
    statuses = _statuses(out)
    assert statuses.index(("good.tif", "verified")) < statuses.index(("good.tif", "deleted"))
    assert ("bad.tif", "verify-failed") in statuses and ("bad.tif", "deleted") not in statuses
    verified = next(r for r in _records(out) if r["status"] == "verified")
    assert len(verified["members_sha256"]) == 64 and verified["problems"] == []


def test_a_verified_movie_not_yet_deleted_at_a_restart_is_deleted_then(tmp_path):
    write_stack(tmp_path / "m.tif", FRAMES)
    _settle_old(tmp_path / "m.tif")
    watch_folder(WatchSettings(str(tmp_path), verify=True, once=True))  # as if killed before deleting
    assert (tmp_path / "m.tif").exists()
    summary = watch_folder(WatchSettings(str(tmp_path), delete_after_verify=True, once=True))
    assert summary == {**summary, "deleted": 1} and not (tmp_path / "m.tif").exists()


# --------------------------------------------------------------------------- stopping
def test_a_stop_abandons_the_encode_and_leaves_no_partial_container(tmp_path):
    write_stack(tmp_path / "m.tif", FRAMES)
    with pytest.raises(Stopped):
        encode_one(str(tmp_path / "m.tif"), WatchSettings(str(tmp_path), B=2), stop=lambda: True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tif"]


def test_sigterm_stops_the_loop_cleanly(tmp_path):
    write_stack(tmp_path / "m.tif", FRAMES)
    _settle_old(tmp_path / "m.tif")
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    with stop_on_signals() as stop:
        timer.start()
        summary = watch_folder(WatchSettings(str(tmp_path), poll=30), stop=stop)
    assert stop.signal == signal.SIGTERM and summary["stopped"] and summary["encoded"] == 1


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_the_command_exits_0_on_sigterm_and_130_on_ctrl_c(tmp_path, sig, code, tree_env):
    proc = subprocess.Popen([sys.executable, "-c", "from emcs.cli import main; main()", "watch",
                             str(tmp_path), "--poll", "30"], stderr=subprocess.PIPE, text=True,
                            env=tree_env)
    assert "watching" in proc.stderr.readline()
    proc.send_signal(sig)
    assert proc.wait(timeout=20) == code
    assert "stopped" in proc.stderr.read()


# --------------------------------------------------------------------------- options
def test_movies_can_be_encoded_by_an_executor(tmp_path):
    for k in range(3):
        write_stack(tmp_path / f"m{k}.tif", FRAMES[: 4 + k])
        _settle_old(tmp_path / f"m{k}.tif")
    with cf.ThreadPoolExecutor(2) as pool:
        summary = watch_folder(WatchSettings(str(tmp_path), once=True, B=2), executor=pool)
    assert summary["encoded"] == 3
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == ["m0.npz", "m1.npz", "m2.npz"]


def test_pattern_and_subfolders_map_to_the_output_folder(tmp_path):
    (tmp_path / "grid1").mkdir()
    write_stack(tmp_path / "grid1" / "m.mrc", FRAMES)
    write_stack(tmp_path / "grid1" / "m.tif", FRAMES)
    _settle_old(tmp_path / "grid1" / "m.mrc", tmp_path / "grid1" / "m.tif")
    out = tmp_path / "out"
    r = _run(tmp_path, "--pattern", "**/*.mrc", "-o", out, "--once", "--max-files", 1)
    assert r.exit_code == 0, r.stderr
    assert (out / "grid1" / "m.npz").exists() and _statuses(out) == [("grid1/m.mrc", "encoded")]


def test_bad_options_give_one_line_naming_the_flag(tmp_path):
    write_stack(tmp_path / "m.tif", FRAMES)
    _settle_old(tmp_path / "m.tif")
    for args, needle in [(("--settle", -1), "--settle must be"), (("--poll", 0), "--poll must be"),
                         (("-B", 0), "-B must be"),
                         (("--quantize", 9), "--quantize must be"),
                         (("--max-files", 0), "--max-files must be")]:
        r = _run(tmp_path, "--once", *args)
        assert r.exit_code == 2, (args, r.stderr)
        assert r.stderr.strip().splitlines()[-1].startswith("emcs: error: ")
        assert needle in r.stderr, r.stderr
    r = _run(tmp_path / "missing", "--once")
    assert r.exit_code == 2 and "no such folder" in r.stderr


def test_a_new_movie_named_like_a_deleted_one_never_replaces_its_container(tmp_path):
    write_stack(tmp_path / "m.tif", FRAMES)
    _settle_old(tmp_path / "m.tif")
    watch_folder(WatchSettings(str(tmp_path), delete_after_verify=True, once=True))
    kept = (tmp_path / "m.npz").read_bytes()
    write_stack(tmp_path / "m.tif", FRAMES[:4])
    _settle_old(tmp_path / "m.tif")
    watch_folder(WatchSettings(str(tmp_path), delete_after_verify=True, once=True))
    assert (tmp_path / "m.npz").read_bytes() == kept and (tmp_path / "m.tif").exists()
    assert _statuses(tmp_path)[-1] == ("m.tif", "failed")


def test_watch_loads_neither_torch_nor_scipy(tmp_path, cli_subprocess):
    """The acquisition PC runs only the encoder: no network or solver libraries are loaded."""
    write_stack(tmp_path / "m.tif", FRAMES)
    _settle_old(tmp_path / "m.tif")
    run, loaded = cli_subprocess("watch", tmp_path, "--once", "--verify", "-q", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "m.npz").exists()
    assert not [m for m in loaded if m.split(".")[0] in ("torch", "scipy", "skimage")]

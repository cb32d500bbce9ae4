"""The work done for one movie: :func:`encode_one` (encode, then verify) -> a journal record.

:func:`encode_one` is one plain function call with picklable arguments (a
path and a frozen :class:`WatchSettings`) that returns a JSON-ready dict, so
it can run inline or be submitted to any ``concurrent.futures``-style
executor (a thread pool, a Dask ``Client.get_executor()``).
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

from emcs.errors import EmcsError
from emcs.io import open_stack
from emcs.tcs.container import load_container, validate
from emcs.tcs.encode import default_output, encode_stack, load_mask_file

#: the movie formats watched when no pattern is given (single images and .npz are left out)
MOVIE_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".mrc", ".mrcs", ".st", ".npy",
                  ".dm3", ".dm4", ".emd", ".ser", ".eer")


@dataclass(frozen=True)
class WatchSettings:
    """What ``emcs watch`` watches, how it decides a movie is finished, and how it encodes.

    Parameters
    ----------
    folder : str
        The folder the detector software writes movies into.
    out : str, optional
        Folder for the containers and the journal (default: ``folder``); a
        movie ``sub/m.tif`` (with a recursive ``pattern``) gives ``out/sub/m.npz``.
    pattern : str, optional
        Glob of the movies, relative to ``folder`` (``"*.tif"``, ``"**/*.mrc"``);
        default: every file directly in ``folder`` with a suffix of
        :data:`MOVIE_SUFFIXES`.
    B, seed, density, mask, pack, quantize
        Encoding, as :func:`emcs.tcs.encode.encode_stack` (``mask``: the path
        of an explicit (B, H, W) mask file; ``B`` None: 10, or the mask's B).
    poll : float
        Seconds between two looks at the folder.
    settle : float
        Seconds a movie's size and modification time must stay unchanged.
    done_marker : str, optional
        Suffix of a file the detector software writes when a movie is done
        (``".done"``: ``movie.tif.done`` or ``movie.done``); replaces ``settle``.
    verify : bool
        Check every container (checksum, frame count, shape against the movie).
    delete_after_verify : bool
        Delete a movie once its container is verified and journaled (implies
        ``verify``); a movie whose encoding or check failed is never deleted.
    once : bool
        Look once, process the finished movies, and return.
    max_files : int, optional
        Return after this many movies were processed (encoded or failed).
    """

    folder: str
    out: str | None = None
    pattern: str | None = None
    B: int | None = None
    seed: int | None = None
    density: float = 0.5
    mask: str | None = None
    pack: str | None = None
    quantize: float | None = None
    poll: float = 2.0
    settle: float = 10.0
    done_marker: str | None = None
    verify: bool = False
    delete_after_verify: bool = False
    once: bool = False
    max_files: int | None = None

    @property
    def out_folder(self) -> str:
        return os.path.abspath(self.out if self.out is not None else self.folder)

    @property
    def verifies(self) -> bool:
        return self.verify or self.delete_after_verify


class Stopped(BaseException):  # noqa: N818  (like KeyboardInterrupt: not an error of the movie)
    """Raised inside an encode when a stop was requested; the partial container is removed."""


def now_utc() -> str:
    """The current UTC time, ``2026-12-03T13:40:01Z``."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def movie_key(path: str, settings: WatchSettings) -> str:
    """The movie's path relative to the watched folder, with ``/`` (the journal's key).

    >>> movie_key("/data/run/sub/m.tif", WatchSettings("/data/run"))
    'sub/m.tif'
    """
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(settings.folder))
    return rel.replace(os.sep, "/")


def container_path(path: str, settings: WatchSettings) -> str:
    """Where the container of ``path`` goes: ``out/<relative folder>/<stem>.npz``.

    >>> container_path("/data/run/sub/m.ome.tif", WatchSettings("/data/run", out="/keep"))
    '/keep/sub/m.npz'
    """
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(settings.folder))
    return os.path.join(settings.out_folder, default_output(rel))


@functools.lru_cache(maxsize=1)
def _mask(path: str):
    return load_mask_file(path)


def masks_of(settings: WatchSettings):
    """The explicit masks of ``settings`` (read once per process), or None."""
    return None if settings.mask is None else _mask(os.path.abspath(settings.mask))


def file_state(path: str) -> tuple[int, int] | None:
    """(size, mtime_ns) of ``path``, or None when it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def base_record(path: str, settings: WatchSettings, state: tuple[int, int] | None, status: str,
                **fields) -> dict:
    """A journal record of ``path`` (key, input, size, mtime, status, time) plus ``fields``.

    ``state`` is the movie's (size, mtime_ns) (:func:`file_state`) when it was handled.
    """
    size, mtime_ns = state if state is not None else (None, None)
    return {"key": movie_key(path, settings), "input": os.path.abspath(path), "size": size,
            "mtime_ns": mtime_ns, "status": status, "time": now_utc(), **fields}


def encode_one(path: str, settings: WatchSettings, *, overwrite: bool = False,
               stop: Callable[[], bool] | None = None) -> dict:
    """Encode one finished movie into its container, check it if asked; return the record.

    Parameters
    ----------
    path : str
        The movie.
    settings : WatchSettings
    overwrite : bool
        Replace an existing container (one this watcher wrote for an older
        version of the movie).
    stop : callable, optional
        Polled after every group; when it returns True the encode stops, the
        partial container is removed and :class:`Stopped` is raised.

    Returns
    -------
    dict
        The journal record: ``status`` ``encoded``, ``verified``,
        ``verify-failed`` (with ``problems``) or ``failed`` (with ``error``),
        the input's ``size`` and ``mtime_ns`` as encoded, the ``container``
        and the encode summary. A problem with the movie never raises: it is
        the record's ``error``. An :class:`~emcs.errors.EmcsError` about an
        option (``B``, ``pack`` ...: the same for every movie) does raise.
    """
    state = file_state(path)
    container = container_path(path, settings)

    def progress(_n: int) -> None:
        if stop is not None and stop():
            raise Stopped

    try:
        os.makedirs(os.path.dirname(container), exist_ok=True)
        res = encode_stack(path, container, B=10 if settings.B is None else settings.B,
                           seed=settings.seed, density=settings.density, masks=masks_of(settings),
                           mask_source=settings.mask, force=overwrite, progress=progress,
                           pack=settings.pack, quantize=settings.quantize)
    except EmcsError as exc:
        if exc.param is not None and exc.path is None:
            raise  # an option is wrong: no movie will encode
        return base_record(path, settings, state, "failed", container=container, error=exc.message)
    except Exception as exc:  # noqa: BLE001  (a reader's surprise must not stop the watcher)
        return base_record(path, settings, state, "failed", container=container,
                           error=f"{type(exc).__name__}: {exc}")
    if state is None or file_state(path) != state:
        os.unlink(container)
        return base_record(path, settings, state, "failed", container=container,
                           error="the movie changed or went away while it was encoded "
                                 "(still being written?)")
    record = base_record(path, settings, state, "encoded", container=container, **_summary(res))
    if settings.verifies:
        problems = verify_container(container, path)
        record.update(status="verify-failed" if problems else "verified", problems=problems)
    return record


def _summary(res: dict) -> dict:
    keep = ("shape", "dtype", "B", "seed", "n_measurements", "measurement_codec", "input_bytes",
            "output_bytes", "ratio", "seconds", "mb_per_s")
    out = {k: res[k] for k in keep if k in res}
    out["members_sha256"] = _members_sha256(res["output"])
    return out


def _members_sha256(path: str) -> str:
    """A fingerprint of a container: sha256 over its members' names, sizes and CRC-32s.

    Read from the zip directory alone (the CRC-32s cover every stored byte),
    so the container's data is not read again.
    """
    digest = hashlib.sha256()
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            digest.update(f"{info.filename}\t{info.file_size}\t{info.CRC:08x}\n".encode())
    return digest.hexdigest()


def verify_container(container: str, movie: str) -> list[str]:
    """Every problem of ``container`` as the encoding of ``movie`` ([] when it is good).

    The container must pass :func:`emcs.tcs.container.validate` (metadata,
    members, the measurements' checksum) and describe exactly the movie on
    disk: its name, frame count and frame shape.
    """
    problems = validate(container)
    if problems:
        return problems
    with load_container(container, verify=False) as c:
        shape, name = tuple(c.input_shape), c.meta.get("input", {}).get("name")
    try:
        with open_stack(movie) as stack:
            movie_shape = tuple(stack.shape)
    except EmcsError as exc:
        return [f"the movie cannot be opened to compare ({exc.message})"]
    if name != os.path.basename(movie):
        problems.append(f"the container was made from {name!r}, not {os.path.basename(movie)!r}")
    if shape != movie_shape:
        problems.append(f"the container holds {shape[0]} frames of {shape[1]}x{shape[2]}, the "
                        f"movie {movie_shape[0]} frames of {movie_shape[1]}x{movie_shape[2]}")
    return problems

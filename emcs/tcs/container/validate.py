"""Check a container and list every problem found (``emcs info --check``)."""

from __future__ import annotations

import os

from emcs.errors import EmcsError
from emcs.tcs.container.members import read_meta, read_small_member
from emcs.tcs.container.reader import (
    consistency_problems,
    input_description,
    open_archive,
    open_container,
    read_measurements,
    read_packed_mask,
)
from emcs.tcs.container.schema import COUNTS_MEMBER, META_MEMBER, meta_problems


def validate(path: str | os.PathLike) -> list[str]:
    """Every problem of a measurement container, as one-line messages ([] for a good file).

    Like ``mrcfile.validate``, it does not raise for a bad file: it reads the
    archive, checks the metadata, the members and their consistency, then the
    checksum of the measurements (decoding packed members), and reports what
    it finds. A problem that leaves nothing further to check (not a zip, no
    readable metadata, a newer format version) ends the list, and so does
    a failed stage (metadata, members, consistency) before the next one.

    Examples
    --------
    >>> validate("movie.npz")                                   # doctest: +SKIP
    ['the container metadata lacks: measurement_sha256']
    """
    path = os.fspath(path)
    try:
        zf = open_archive(path)
    except EmcsError as exc:
        return [exc.message]
    with zf:
        problems = [f"not an emcs measurement container (no {m} member)"
                    for m in (META_MEMBER, COUNTS_MEMBER) if m not in zf.NameToInfo]
        if META_MEMBER not in zf.NameToInfo:
            return problems
        try:
            meta = read_meta(zf, path)
        except EmcsError as exc:
            return problems + [exc.message]
        problems += meta_problems(meta)
        if problems:
            return problems
        readers = {"counts": lambda: read_small_member(zf, COUNTS_MEMBER, path),
                   "packed": lambda: read_packed_mask(zf, path, meta),
                   "y": lambda: read_measurements(zf, path, meta, mmap=True),
                   "input": lambda: input_description(meta, path)}
        parts = {}
        for name, read in readers.items():
            try:
                parts[name] = read()
            except EmcsError as exc:
                problems.append(exc.message)
    if problems:
        return problems
    problems = consistency_problems(meta, parts["y"], parts["counts"], parts["packed"], parts["input"][0])
    if problems:
        return problems
    try:
        with open_container(path) as c:
            c.verify()
    except EmcsError as exc:
        return [exc.message]
    return []

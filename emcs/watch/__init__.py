"""``emcs watch``: encode each movie the detector software finishes writing, on the acquisition PC.

The watcher looks at a folder every ``poll`` seconds. A movie is encoded once
it is finished (:mod:`emcs.watch.ready`: its size and modification time have
not changed for ``settle`` seconds, or a done-marker file is beside it, and
its header agrees with its size), into one container per movie, written
atomically (a stopped or killed run leaves no partial container). Every
outcome is appended to a JSON-lines journal in the output folder
(:mod:`emcs.watch.journal`), so a restart neither encodes a movie twice nor
skips one, and a movie that failed is retried only once it changes. With
``verify`` each container is checked (checksum, frame count, shape) and with
``delete_after_verify`` the movie is then deleted, never before its verified
record is on disk.

The encoding of one movie is one call, :func:`encode_one` ``(path, settings)
-> record``, which can run here or be submitted to an executor.

>>> from emcs.watch import WatchSettings, watch_folder
>>> summary = watch_folder(WatchSettings("/data/run1", out="/data/run1-tcs", B=10,
...                                      settle=10, once=True))  # doctest: +SKIP

It composes the TCS encoder and the I/O layer, like :mod:`emcs.demo`: only
:mod:`emcs.cli` imports it (``docs/architecture.md``); see ``docs/watch.md``.
"""

from emcs.watch.journal import JOURNAL_NAME, Journal
from emcs.watch.loop import StopFlag, check_settings, stop_on_signals, watch_folder
from emcs.watch.ready import SettleTracker, incomplete_reason
from emcs.watch.task import WatchSettings, encode_one, verify_container

__all__ = [
    "JOURNAL_NAME",
    "Journal",
    "SettleTracker",
    "StopFlag",
    "WatchSettings",
    "check_settings",
    "encode_one",
    "incomplete_reason",
    "stop_on_signals",
    "verify_container",
    "watch_folder",
]

"""Run emcs work on a Dask cluster: one task per file, or chunks of one file in order.

Workers read and write by path (a shared filesystem): no pixel data pass
through the scheduler for per-file work. Every task runs in
:func:`run_task`, which

- returns a user error (:class:`~emcs.errors.EmcsError`) as a value instead of
  raising it, so that it reaches the client whole (message, file, parameter)
  and is not retried as if the worker had failed;
- hands the library function a ``progress`` callback that checks a
  :class:`distributed.Event` named after the run: once the client sets it
  (Ctrl-C, or a failure without ``keep_going``), the function stops at its
  next progress step with :class:`Cancelled` and its atomic write removes the
  partial output.

A worker that dies is handled by Dask: the scheduler gives its tasks to the
other workers (up to ``distributed.scheduler.allowed-failures`` times).
"""

from __future__ import annotations

import contextlib
import functools
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from emcs.errors import EmcsError

#: seconds between two looks at the run's cancel event inside a task
CHECK_EVERY_S = 0.5
#: keyword arguments of emcs functions that take messages (warnings, notes) for the user
MESSAGE_KEYS = ("on_warning", "on_note")
#: seconds the client waits for running tasks to stop after it cancelled a run
CANCEL_GRACE_S = 30.0


class Cancelled(Exception):
    """Raised inside a task whose run was cancelled by the client."""


class _CancelCheck:
    """A ``progress`` callback for any of emcs' progress protocols that stops a cancelled run.

    emcs' file-level functions call ``progress(n)`` (advance), or
    ``progress(total)`` / ``progress(codec, budget)`` returning an advance
    callable: every call returns the callback itself, and looks (at most every
    :data:`CHECK_EVERY_S` seconds) whether the run's event is set.
    """

    def __init__(self, run_id: str):
        self.run_id = run_id
        self._event = None
        self._last = 0.0

    def __call__(self, *_args):
        now = time.monotonic()
        if now - self._last >= CHECK_EVERY_S:
            self._last = now
            if self._event is None:
                from distributed import Event

                self._event = Event(self.run_id)
            if self._event.is_set():
                raise Cancelled(f"run {self.run_id} cancelled")
        return self


@dataclass
class Outcome:
    """The result of one task: ``value`` or ``error`` (a user error, or a failed task)."""

    value: Any = None
    error: EmcsError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def run_task(func: Callable, args: tuple, kwargs: dict, run_id: str | None = None,
             messages: tuple[str, ...] = ()):
    """Worker side: ``func(*args, **kwargs, progress=...)``; a user error comes back as a value.

    The keyword arguments named in ``messages`` (``on_warning``, ``on_note``)
    receive the messages the function reports; they come back with the result
    (see :class:`Run`).
    """
    said: list[tuple[str, str]] = []
    kwargs = {**kwargs, **{key: functools.partial(_collect, said, key) for key in messages}}
    try:
        if run_id is not None:
            kwargs["progress"] = _CancelCheck(run_id)
            kwargs["progress"]()  # a task that starts after its run was cancelled stops here
        return ("ok", func(*args, **kwargs), said)
    except EmcsError as exc:
        return ("error", (exc.message, exc.path, exc.param), said)


def _collect(said: list, key: str, message: str) -> None:
    said.append((key, message))


def _outcome(returned, callbacks: dict | None = None) -> Outcome:
    """An :class:`Outcome` from what :func:`run_task` returned; its messages go to ``callbacks``."""
    status, value, said = returned
    for key, message in said:
        (callbacks or {})[key](message)
    if status == "ok":
        return Outcome(value=value)
    return Outcome(error=EmcsError(*value))


@dataclass
class Run:
    """One batch of tasks of a client, cancellable as a whole (:meth:`cancel`)."""

    client: Any
    run_id: str = field(default_factory=lambda: f"emcs-{uuid.uuid4().hex}")
    futures: list = field(default_factory=list)
    _callbacks: dict = field(default_factory=dict, repr=False)

    def submit(self, func: Callable, *args, resources: dict | None = None, cancellable: bool = True,
               **kwargs):
        """Submit ``run_task(func, args, kwargs)``; ``cancellable`` tasks get the progress callback.

        Callables among ``kwargs`` named in :data:`MESSAGE_KEYS` stay here:
        the messages the task reports are handed to them by :meth:`outcome`.
        """
        callbacks = {key: kwargs.pop(key) for key in MESSAGE_KEYS if callable(kwargs.get(key))}
        future = self.client.submit(run_task, func, args, kwargs, self.run_id if cancellable else None,
                                    tuple(callbacks), resources=resources, pure=False)
        self.futures.append(future)
        self._callbacks[future.key] = callbacks
        return future

    def outcome(self, future) -> Outcome:
        """The :class:`Outcome` of a finished task of this run (its messages reported)."""
        return _outcome(future.result(), self._callbacks.pop(future.key, None))

    def value(self, future):
        """The value of a finished task of this run; a user error it returned is raised."""
        outcome = self.outcome(future)
        if not outcome.ok:
            raise outcome.error
        return outcome.value

    def cancel(self, grace: float = CANCEL_GRACE_S) -> None:
        """Stop every task of the run and wait (up to ``grace`` seconds) until they have stopped.

        Tasks not yet started stop as they start; running ones at their next
        progress step, their atomic writes removing the partial outputs (a
        task whose function reports no progress before it ends finishes its
        output). The futures are only released afterwards: Dask cannot
        interrupt a running task, so a released one would go on writing.
        """
        from distributed import Event, wait

        Event(self.run_id, client=self.client).set()
        pending = [f for f in self.futures if not f.done()]
        with contextlib.suppress(TimeoutError):
            wait(pending, timeout=grace)
        self.client.cancel(pending)


def map_files(client, func: Callable, jobs: Sequence[tuple[tuple, dict]], *, keep_going: bool = False,
              progress: Callable[[int], None] | None = None, resources: dict | None = None) -> list[Outcome]:
    """Run ``func(*args, **kwargs)`` for every ``(args, kwargs)`` of ``jobs``, one task each.

    Parameters
    ----------
    client : distributed.Client
    func : callable
        A file-level function (it reads and writes by path, takes a
        ``progress`` callback and returns a summary), e.g.
        :func:`emcs.tcs.encode.encode_stack`.
    jobs : sequence of (args, kwargs)
    keep_going : bool
        On a user error, carry on with the other files (the error is in its
        :class:`Outcome`); otherwise cancel the run and raise it.
    progress : callable, optional
        Called with 1 as each task finishes (in completion order).
    resources : dict, optional
        Dask resources every task needs (``{"GPU": 1}``).

    Returns
    -------
    list of Outcome
        In the order of ``jobs``.

    Raises
    ------
    EmcsError
        The first user error, without ``keep_going``.
    KeyboardInterrupt
        After cancelling the run (no partial outputs remain).
    """
    from distributed import as_completed

    run = Run(client)
    index = {run.submit(func, *args, resources=resources, **kwargs).key: i
             for i, (args, kwargs) in enumerate(jobs)}
    outcomes: list[Outcome | None] = [None] * len(index)
    try:
        for future in as_completed(run.futures):
            outcome = run.outcome(future)
            outcomes[index[future.key]] = outcome
            if progress is not None:
                progress(1)
            if not outcome.ok and not keep_going:
                run.cancel()
                raise outcome.error
    except KeyboardInterrupt:
        run.cancel()
        raise
    return outcomes  # type: ignore[return-value]


def ordered_stream(submit: Callable[[Any], Any], items: Iterable, in_flight: int = 4,
                   gather: Callable[[Any], Any] | None = None) -> Iterator:
    """Yield ``gather(future)`` (default: its result) of the ``submit(item)`` futures, in the
    order of ``items``.

    At most ``in_flight`` futures exist at a time (the next is submitted as
    soon as the oldest is gathered), so memory is bounded by ``in_flight``
    results whatever the number of items. Leaving the loop early (an error,
    ``break``, Ctrl-C) cancels the futures still in flight.
    """
    if in_flight < 1:
        raise EmcsError(f"in_flight must be at least 1, got {in_flight}", param="in_flight")
    pending: deque = deque()
    items = iter(items)
    try:
        for item in items:
            pending.append(submit(item))
            if len(pending) >= in_flight:
                break
        while pending:
            future = pending.popleft()
            result = future.result() if gather is None else gather(future)
            for item in items:  # refill before handing the result out: workers keep busy
                pending.append(submit(item))
                break
            yield result
    finally:
        for future in pending:
            future.cancel()

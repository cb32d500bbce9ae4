"""The one training loop of emcs: schedule, budgets, checkpoints, resume, model cards.

Every ``emcs train`` recipe (:mod:`emcs.train.tcs`, :mod:`emcs.train.dlss`,
:mod:`emcs.train.sim`) builds a network, an optimiser and three functions (draw the
batch of a step, the loss of a batch, the model card of a step) and hands them to
:func:`run`, which

- sets the learning rate of every step from a :class:`Schedule` (linear warm-up,
  cosine decay to a floor) over the run's :class:`Budget` progress: the largest of
  ``step / steps``, wall-clock time / ``max_minutes`` and CPU time /
  ``max_cpu_minutes`` (so a time budget ends with a cooled-down model; a CPU-time
  budget is fair between runs sharing a machine);
- clips the gradient norm (Adam steps);
- every ``every`` steps and at the end writes the training state
  (:func:`save_checkpoint`, ``torch.save`` of tensors and plain data, read back with
  ``weights_only=True``) and the fp16 weights with their model card
  (:func:`emcs.nn.weights.save_model`).

Checkpoints hold ``model``, ``optimizer``, ``step``, ``elapsed`` and ``cpu_elapsed``
plus the recipe's own entries. :func:`read_checkpoint` also reads the spelling of
earlier releases (``opt`` for the optimiser state) and refuses anything else with one
line naming the file.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emcs.errors import EmcsError

__all__ = ["Budget", "Clock", "Hooks", "Prefetch", "Schedule", "read_checkpoint", "restore", "run", "save_checkpoint"]

#: optimiser-state keys a checkpoint may use: the current one, then that of earlier releases
OPTIMIZER_KEYS = ("optimizer", "opt")


@dataclass
class Schedule:
    """Learning rate of a step: ``lr * warm-up * (floor + (1 - floor) * (1 + cos(pi p)) / 2)``.

    Parameters
    ----------
    lr : float
        Peak learning rate.
    floor : float
        Final learning rate as a fraction of ``lr``.
    warmup : int
        Steps of linear warm-up, ``min(1, (step + 1) / warmup)`` (0: none).
    decay_after_warmup : bool
        False: the cosine follows the run's progress p from step 0 (the warm-up scales
        it). True: the cosine starts after the warm-up and runs over the remaining
        ``steps - warmup`` steps.
    steps : int
        Total steps (only used with ``decay_after_warmup``).

    Examples
    --------
    >>> s = Schedule(1e-3, floor=0.01, warmup=100)
    >>> round(s.at(0, 0.0), 8), round(s.at(500, 1.0), 8)
    (1e-05, 1e-05)
    """

    lr: float
    floor: float
    warmup: int = 0
    decay_after_warmup: bool = False
    steps: int = 0

    def at(self, step: int, progress: float) -> float:
        """The learning rate of ``step`` at ``progress`` (0..1) of the run."""
        warm = min(1.0, (step + 1) / self.warmup) if self.warmup else 1.0
        if self.decay_after_warmup:
            done = max(step - self.warmup, 0) / max(1, self.steps - self.warmup)
            progress = min(done, 1.0)
        return self.lr * warm * (self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress)))


class Clock:
    """Wall-clock and CPU seconds of a run, counting those of the runs it resumes."""

    def __init__(self, elapsed: float = 0.0, cpu_elapsed: float = 0.0):
        self.t0 = time.time() - float(elapsed)
        self.c0 = time.process_time() - float(cpu_elapsed)

    def wall(self) -> float:
        return time.time() - self.t0

    def cpu(self) -> float:
        return time.process_time() - self.c0


@dataclass
class Budget:
    """When a run ends: ``steps``, and optionally wall-clock / CPU minutes (whichever is first)."""

    steps: int
    max_minutes: float | None = None
    max_cpu_minutes: float | None = None

    def progress(self, step: int, clock: Clock) -> float:
        """Fraction of the budget used (1.0: stop)."""
        p = step / self.steps if self.steps > 0 else 1.0
        if self.max_minutes:
            p = max(p, clock.wall() / (60.0 * self.max_minutes))
        if self.max_cpu_minutes:
            p = max(p, clock.cpu() / (60.0 * self.max_cpu_minutes))
        return min(p, 1.0)


@dataclass
class Hooks:
    """What a recipe gives :func:`run`.

    batch : step -> batch (anything ``loss`` takes)
    loss : batch -> scalar loss tensor
    card : step -> model card (called at every save, before the checkpoint is written)
    state : () -> extra checkpoint entries (tensors or plain data)
    after_step : (steps done, loss, learning rate) -> None, e.g. logging
    """

    batch: Callable[[int], Any]
    loss: Callable[[Any], Any]
    card: Callable[[int], dict]
    state: Callable[[], dict] = dict
    after_step: Callable[[int, float, float], None] | None = None


def _one_thread() -> None:
    """Worker start-up: one thread for the numerical libraries (set before torch or BLAS start)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"


class Prefetch:
    """The batches of steps ``start``, ``start + 1``, ... drawn ahead in worker processes.

    ``draw`` (step -> batch) must be picklable (a module-level function or a
    ``functools.partial`` of one) and depend on the step alone, as every recipe's seeded
    batches do: the batches, and so the run, are then the same with any number of
    workers. Batches come back in step order; at most ``ahead`` are in flight. Use it as
    a context manager (or call :meth:`close`) so the workers stop with the run.

    Examples
    --------
    >>> from functools import partial
    >>> with Prefetch(partial(pow, 2), start=3, workers=1) as fetch:
    ...     [fetch(s) for s in (3, 4, 5)]
    [8, 16, 32]
    """

    def __init__(self, draw: Callable[[int], Any], start: int, workers: int, ahead: int | None = None):
        import concurrent.futures
        import multiprocessing

        self.draw = draw
        self.ahead = max(1, ahead or 2 * workers)
        self.next = start
        self.pending: dict[int, Any] = {}
        # spawn: the parent holds torch's thread pools (and maybe CUDA), which a fork would copy half-alive
        self.pool = concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_one_thread)

    def __call__(self, step: int):
        if step not in self.pending:  # the first call, or a step out of order: start over from it
            for fut in self.pending.values():
                fut.cancel()
            self.pending.clear()
            self.next = step
        while self.next < step + self.ahead:
            self.pending[self.next] = self.pool.submit(self.draw, self.next)
            self.next += 1
        return self.pending.pop(step).result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def save_checkpoint(path: str | os.PathLike, model, opt, step: int, clock: Clock, **extra) -> None:
    """Write the training state atomically (``torch.save`` to a temporary file, then rename)."""
    import torch

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": int(step),
                "elapsed": clock.wall(), "cpu_elapsed": clock.cpu(), **extra}, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | os.PathLike, device="cpu") -> dict:
    """A checkpoint's entries (``weights_only=True``), the optimiser state under ``optimizer``.

    Raises
    ------
    EmcsError
        The file is unreadable or holds no model, optimiser state or step.
    """
    import pickle

    import torch

    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise EmcsError(f"cannot read this checkpoint ({str(exc).splitlines()[0]})", path) from None
    key = next((k for k in OPTIMIZER_KEYS if isinstance(state, dict) and k in state), None)
    if key is None or "model" not in state or "step" not in state:
        raise EmcsError("not an emcs training checkpoint (needs model, optimizer and step)", path)
    state["optimizer"] = state.pop(key)
    return state


def restore(state: dict, model, opt, path: str | os.PathLike) -> int:
    """Load a checkpoint's model and optimiser state; returns its step."""
    try:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise EmcsError(f"cannot resume from this checkpoint ({str(exc).splitlines()[0]})", path) from None
    return int(state["step"])


def run(model, opt, hooks: Hooks, *, out: str | os.PathLike, checkpoint: str | os.PathLike,
        budget: Budget, schedule: Schedule, start: int = 0, clock: Clock | None = None,
        every: int = 100, clip_grad: float | None = 1.0,
        advance: Callable[[int], None] | None = None) -> tuple[dict, int]:
    """Train from step ``start`` until the budget is used; returns (last model card written, steps).

    Every ``every`` steps, and at the end unless the last step was just saved, the
    card of the step is made, the checkpoint written and the weights saved with
    the card to ``out``.
    """
    import torch

    from emcs.nn.weights import save_model

    clock = clock or Clock()
    step, card, saved = start, None, None

    def save() -> dict:
        made = hooks.card(step)
        save_checkpoint(checkpoint, model, opt, step, clock, **hooks.state())
        model.eval()
        written = save_model(out, model, made)
        model.train()
        return written

    model.train()
    while True:
        p = budget.progress(step, clock)
        if p >= 1.0:
            break
        lr = schedule.at(step, p)
        for g in opt.param_groups:
            g["lr"] = lr
        loss = hooks.loss(hooks.batch(step))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        opt.step()
        step += 1
        if hooks.after_step is not None:
            hooks.after_step(step, float(loss.detach()), lr)
        if advance is not None:
            advance(1)
        if step % every == 0:
            card, saved = save(), step
    if saved != step:
        card = save()
    model.eval()
    return card, step

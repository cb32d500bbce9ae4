"""Resolve the ``--device`` option."""

from __future__ import annotations

from emcs.errors import EmcsError


def pick_device(name: str = "auto"):
    """Return a ``torch.device`` for ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    ``auto`` picks CUDA when a GPU is visible and the CPU otherwise. Asking for
    CUDA on a machine without one is a user error (:class:`EmcsError`).
    """
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EmcsError(f"--device {name}: no CUDA GPU is available on this machine")
        try:
            return torch.device(name)
        except RuntimeError as exc:
            raise EmcsError(f"--device {name}: {exc}") from exc
    raise EmcsError(f"--device must be auto, cpu or cuda, got {name!r}")

"""Shipped network weights: fp16 safetensors plus a JSON model card, checked on load.

A model ``models/NAME.safetensors`` always comes with ``models/NAME.json``::

    {
      "format_version": 1,
      "architecture": "unfold",          # key into the caller's builder table
      "config": {...},                   # constructor keyword arguments
      "parameters": 123456,              # filled in by save_model
      "sha256": "...",                   # of the .safetensors file, filled in by save_model
      ... anything else: data, B range, training steps, command, held-out metrics
    }

:func:`load_model` refuses a missing or unreadable card, an unknown
architecture, a checksum mismatch (corrupt or swapped file) and tensors that do
not fit the network the card describes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from emcs.errors import EmcsError
from emcs.io import atomic_output

CARD_FORMAT_VERSION = 1


def models_dir() -> Path:
    """Where shipped weights live: ``$EMCS_MODELS`` if set, else the repository's ``models/``."""
    env = os.environ.get("EMCS_MODELS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "models"


def card_path(weights_path: str | os.PathLike) -> Path:
    """The model card that belongs to a weights file (same stem, ``.json``)."""
    return Path(weights_path).with_suffix(".json")


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_card(weights_path: str | os.PathLike) -> dict:
    """Read and minimally validate the model card of ``weights_path``."""
    cpath = card_path(weights_path)
    if not cpath.is_file():
        raise EmcsError(f"model card {cpath.name} is missing next to the weights", weights_path)
    try:
        card = json.loads(cpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EmcsError(f"model card is not valid JSON ({exc})", cpath) from exc
    if not isinstance(card, dict):
        raise EmcsError("model card must be a JSON object", cpath)
    for key in ("architecture", "config", "sha256"):
        if key not in card:
            raise EmcsError(f"model card lacks the field {key!r}", cpath)
    if int(card.get("format_version", 1)) > CARD_FORMAT_VERSION:
        raise EmcsError(
            f"model card format {card['format_version']} is newer than this emcs "
            f"understands ({CARD_FORMAT_VERSION}); upgrade emcs",
            cpath,
        )
    return card


def save_model(path: str | os.PathLike, model, card: dict, force: bool = True) -> dict:
    """Save ``model``'s weights as fp16 safetensors and write its model card.

    Parameters
    ----------
    path : str
        Destination ``.safetensors`` file; the card goes to the ``.json`` beside it.
    model : torch.nn.Module
    card : dict
        Must contain ``architecture`` (str) and ``config`` (dict). ``parameters``,
        ``sha256``, ``format_version`` and ``dtype`` are filled in here.
    force : bool
        Overwrite existing files (default True: training refreshes its own output).

    Returns
    -------
    dict
        The card as written.
    """
    import torch
    from safetensors.torch import save_file

    if "architecture" not in card or "config" not in card:
        raise ValueError("a model card needs 'architecture' and 'config'")
    path = Path(path)
    if path.suffix != ".safetensors":
        raise EmcsError("weights must be saved as a .safetensors file", path)
    tensors = {}
    for name, value in model.state_dict().items():
        value = value.detach().to("cpu").contiguous()
        if value.is_floating_point():
            value = value.to(torch.float16)
        tensors[name] = value
    with atomic_output(path, force=force) as tmp:
        save_file(tensors, tmp, metadata={"architecture": str(card["architecture"])})
    full = dict(card)
    full["format_version"] = CARD_FORMAT_VERSION
    full["dtype"] = "float16"
    full["parameters"] = int(sum(p.numel() for p in model.parameters()))
    full["sha256"] = file_sha256(path)
    with atomic_output(card_path(path), force=True) as tmp:
        Path(tmp).write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")
    return full


def load_model(
    path: str | os.PathLike,
    builders: dict[str, Callable[..., object]],
    device=None,
):
    """Load weights + card and return ``(model, card)``, verified.

    Parameters
    ----------
    path : str
        A ``.safetensors`` file with its ``.json`` card beside it.
    builders : dict
        Architecture name -> callable taking the card's ``config`` as keyword
        arguments and returning an (untrained) ``torch.nn.Module``.
    device : torch.device, optional
        Where to put the model (float32). Default CPU.
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise EmcsError("no such weights file", path)
    card = read_card(path)
    arch = card["architecture"]
    if arch not in builders:
        raise EmcsError(
            f"model card names architecture {arch!r}, expected one of {sorted(builders)}", path
        )
    if file_sha256(path) != card["sha256"]:
        raise EmcsError("weights do not match the checksum in their model card (corrupt or replaced file)", path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise EmcsError(f"not a readable safetensors file ({exc})", path) from exc
    try:
        model = builders[arch](**card["config"])
    except TypeError as exc:
        raise EmcsError(f"model card config does not fit architecture {arch!r} ({exc})", path) from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise EmcsError(
            f"weights do not fit the {arch!r} network: missing {missing[:3]}, unexpected {unexpected[:3]}",
            path,
        )
    for name, value in tensors.items():
        if tuple(value.shape) != tuple(expected[name].shape):
            raise EmcsError(
                f"weights do not fit the {arch!r} network: {name} has shape {tuple(value.shape)}, "
                f"expected {tuple(expected[name].shape)}",
                path,
            )
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}
    model.load_state_dict(state, strict=True)
    model.eval()
    model.to(device if device is not None else torch.device("cpu"))
    return model, card

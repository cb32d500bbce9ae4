"""Network weights: fp16 safetensors plus a JSON model card, found and checked on load.

The networks emcs ships are package data, ``emcs/models/NAME.safetensors``, and
each comes with its card ``emcs/models/NAME.json``::

    {
      "format_version": 1,
      "architecture": "unfold",          # key into the caller's builder table
      "config": {...},                   # constructor keyword arguments
      "parameters": 123456,              # filled in by save_model
      "sha256": "...",                   # of the .safetensors file, filled in by save_model
      ... anything else: data, B range, training steps, command, held-out metrics
    }

The environment variable ``EMCS_MODELS`` (one folder, or several separated by
``os.pathsep``) adds networks and overrides shipped ones of the same name: its
folders are searched first (:func:`model_dirs`, :func:`find_weights`,
:func:`list_weights`).

:func:`load_model` refuses a missing or unreadable card, an unknown
architecture, a checksum mismatch (corrupt or swapped file) and tensors that do
not fit the network the card describes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from emcs.errors import EmcsError
from emcs.extras import REINSTALL
from emcs.io import atomic_output

CARD_FORMAT_VERSION = 1
#: environment variable: folders searched before the shipped networks
MODELS_ENV = "EMCS_MODELS"
#: how to repair an installation whose shipped networks are missing or damaged
REINSTALL_HINT = f"{REINSTALL}, or set {MODELS_ENV} to a folder holding the weights"


def models_dir() -> Path:
    """The folder of the networks shipped inside the emcs package (``emcs/models``)."""
    return Path(resources.files("emcs").joinpath("models"))


def model_dirs() -> list[Path]:
    """Folders searched for networks, first match wins: ``$EMCS_MODELS`` entries, then :func:`models_dir`.

    Examples
    --------
    >>> model_dirs()[-1] == models_dir()
    True
    """
    extra = [Path(p) for p in os.environ.get(MODELS_ENV, "").split(os.pathsep) if p]
    return [*extra, models_dir()]


def _weights_name(name: str) -> str:
    return name if name.endswith(".safetensors") else name + ".safetensors"


def find_weights(name: str) -> Path:
    """The weights file of network ``name`` (``tcs-unfold`` or ``tcs-unfold.safetensors``).

    The first of :func:`model_dirs` that holds it wins. Raises :class:`EmcsError`
    naming the file and the fix when no folder has it.
    """
    filename = _weights_name(name)
    for folder in model_dirs():
        if (folder / filename).is_file():
            return folder / filename
    raise EmcsError(f"no such weights file in {_searched()}: {REINSTALL_HINT}",
                    models_dir() / filename)


def list_weights(pattern: str) -> list[Path]:
    """Weights files whose stem matches ``pattern`` (``tcs-*``), sorted by name.

    A name found in several of :func:`model_dirs` is taken from the first.
    Raises :class:`EmcsError` when no folder has any, since the shipped
    networks are then missing.
    """
    found: dict[str, Path] = {}
    for folder in model_dirs():
        for path in folder.glob(_weights_name(pattern)):
            found.setdefault(path.name, path)
    if not found:
        raise EmcsError(f"no network weights {_weights_name(pattern)} in {_searched()}: "
                        f"{REINSTALL_HINT}")
    return [found[name] for name in sorted(found)]


def _searched() -> str:
    return ", ".join(str(p) for p in model_dirs())


def _repair_hint(path: Path) -> str:
    """How to fix a damaged file: reinstall for a shipped network, nothing for the user's own."""
    try:
        shipped = path.resolve().parent == models_dir().resolve()
    except OSError:
        shipped = False
    return f"; {REINSTALL_HINT}" if shipped else ""


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
        raise EmcsError(f"model card {cpath.name} is missing next to the weights"
                        f"{_repair_hint(cpath)}", weights_path)
    try:
        card = json.loads(cpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EmcsError(f"model card is not valid JSON ({exc}){_repair_hint(cpath)}", cpath) from exc
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
        raise EmcsError(f"no such weights file{_repair_hint(path)}", path)
    card = read_card(path)
    arch = card["architecture"]
    if arch not in builders:
        raise EmcsError(
            f"model card names architecture {arch!r}, expected one of {sorted(builders)}", path
        )
    if file_sha256(path) != card["sha256"]:
        raise EmcsError("weights do not match the checksum in their model card (corrupt or replaced "
                        f"file){_repair_hint(path)}", path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise EmcsError(f"not a readable safetensors file ({exc}){_repair_hint(path)}", path) from exc
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

"""TCS decoders chosen by name, all called the same way: ``decoder(y, operator) -> frames``.

Names: ``"gap-tv"`` (:mod:`emcs.tcs.gaptv`; Yuan, ICIP 2016) and every shipped
network model, e.g. ``"tcs-unfold"`` (deep-unfolded GAP, :mod:`emcs.tcs.nets.unfold`)
and ``"tcs-tcsdl"`` (TCS-DL of Zheng, Wang, Yuan & Xin, Patterns 2021,
:mod:`emcs.tcs.nets.tcsdl`); a network model elsewhere is named by the path of
its ``.safetensors`` file (with its JSON card beside it).

API
---
``decoder_names(folder=None) -> tuple[str, ...]``
    ``"gap-tv"`` and the installed network models.
``select_decoder(method, B, density, *, model=None, group=None, folder=None) -> (name, why)``
    The decoder for groups of B frames: ``method`` is ``"auto"``/``"net"`` (a
    network that covers B and the density, else GAP-TV), ``"gap-tv"``, or a
    decoder name; ``model`` (name or path) forces a network. ``why`` says why
    GAP-TV serves a request for a network (None otherwise).
``get_decoder(name, *, device=None, folder=None, **options) -> GapTv | Network``
    The decoder object; ``options`` go to :class:`GapTv` or :class:`Network`.
``networks_unavailable() -> str | None``
    Why the networks cannot run here (torch or safetensors missing), or None.

A decoder object has a ``name`` and is called as ``decoder(y, operator,
progress=None)`` with measurements ``y`` (n, H, W) of frames scaled to about
[0, 1] and the :class:`~emcs.tcs.operator.TcsOperator` of their groups
(``operator.group(n)`` for a short group); it returns (n, B, H, W) float32
frames. The device is given once, as a ``torch.device``.

Examples
--------
>>> import numpy as np
>>> from emcs.tcs.operator import TcsOperator
>>> op = TcsOperator.generated(seed=1, B=4, frame_shape=(16, 16))
>>> y = op.forward(np.full((1, 4, 16, 16), 0.5, np.float32))
>>> decoder = get_decoder("gap-tv", iters=10)
>>> x = decoder(y, op)
>>> decoder.name, x.shape, bool(abs(x - 0.5).max() < 0.05)
('gap-tv', (1, 4, 16, 16), True)
>>> select_decoder("gap-tv", 10, 0.5)
('gap-tv', None)
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

from emcs.errors import EmcsError
from emcs.tcs import gaptv
from emcs.tcs.operator import TcsOperator

GAP_TV = "gap-tv"
#: methods besides the decoder names: a network when one covers the request, else GAP-TV
METHODS = ("auto", "net")


class GapTv:
    """GAP-TV (:func:`emcs.tcs.gaptv.gap_tv`) with fixed settings, on one device.

    Parameters
    ----------
    device : torch.device, optional
        Where to compute (default: the CPU).
    **settings
        Keyword arguments of :func:`~emcs.tcs.gaptv.gap_tv` (``iters``,
        ``weight``, ``accelerate``, ``temporal``, ``max_elements``, ...).
    """

    name = GAP_TV

    def __init__(self, *, device=None, **settings):
        self.device = device
        self.settings = settings

    def __call__(self, y, operator: TcsOperator, progress: Callable[[int], None] | None = None):
        return gaptv.gap_tv(y, operator, device=self.device, progress=progress, **self.settings)


class Network:
    """A trained network (:func:`emcs.tcs.nets.api.decode_measurements`) on one device.

    Parameters
    ----------
    model : ModelInfo
        From :func:`emcs.tcs.nets.api.find_model` or :func:`~emcs.tcs.nets.api.load_model_info`.
    device : torch.device, optional
        Where to run (default: CUDA if available, else the CPU).
    ensemble : {1, 2, 4, 8}
        Geometric self-ensemble size.
    **options
        ``precision``, ``tile`` and ``overlap`` of
        :func:`~emcs.tcs.nets.api.decode_measurements`.
    """

    def __init__(self, model, *, device=None, ensemble: int = 1, **options):
        self.model = model
        self.device = device
        self.ensemble = ensemble
        self.options = options

    @property
    def name(self) -> str:
        return self.model.name

    def __call__(self, y, operator: TcsOperator, progress: Callable[[int], None] | None = None):
        from emcs.tcs.nets.api import decode_measurements

        return decode_measurements(y, operator, self.model, self.device, progress=progress,
                                   ensemble=self.ensemble, **self.options)


def network_precision(name: str | os.PathLike, precision: str, device) -> str:
    """The arithmetic the network decoder ``name`` runs in on ``device`` for ``precision``
    (:func:`emcs.tcs.nets.api.resolve_precision`; ``auto`` resolved)."""
    api = _models()
    return api.resolve_precision(precision, api.load_model_info(name), device)


def networks_unavailable() -> str | None:
    """Why the neural decoders cannot run here (a missing package), or None."""
    missing = [m for m in ("torch", "safetensors") if importlib.util.find_spec(m) is None]
    if missing:
        return f"the neural decoders are not available (no {' or '.join(missing)} installed)"
    return None


def _models():
    """The model lookup (:mod:`emcs.tcs.nets.api`; imported when first needed)."""
    from emcs.tcs.nets import api

    return api


def decoder_names(folder: str | os.PathLike | None = None) -> tuple[str, ...]:
    """``"gap-tv"`` and the names of the installed network models (best first)."""
    return (GAP_TV, *(info.name for info in _models().list_models(folder)))


def select_decoder(
    method: str,
    B: int,
    density: float,
    *,
    model: str | os.PathLike | None = None,
    group: str | None = None,
    folder: str | os.PathLike | None = None,
) -> tuple[str, str | None]:
    """Choose the decoder of groups of ``B`` frames at this mask density.

    Parameters
    ----------
    method : str
        ``"auto"`` or ``"net"`` (the best network covering B and the density,
        else GAP-TV), ``"gap-tv"``, or a decoder name from :func:`decoder_names`.
    B : int
        Frames in these groups.
    density : float
        Mask density.
    model : str or path, optional
        A network model (name or ``.safetensors`` path) to use instead of the
        best covering one; GAP-TV still serves groups its card does not cover.
    group : str, optional
        How the notes name these groups (default ``"B=<B>"``).
    folder : path, optional
        Models folder (default: :func:`emcs.nn.weights.models_dir`).

    Returns
    -------
    name : str
        ``"gap-tv"``, a model name, or the model path given.
    why : str or None
        Why GAP-TV serves a request for a network (None otherwise).

    Raises
    ------
    EmcsError
        ``method`` names no decoder (parameter ``method``), or ``model`` no model.
    """
    if method == GAP_TV:
        return GAP_TV, None
    if method not in METHODS and model is None:
        names = decoder_names(folder)
        if method not in names:
            raise EmcsError(f"method must be one of {', '.join((*METHODS, *names))}, got {method!r}",
                            param="method")
        model = method
    reason = networks_unavailable()
    if reason is not None:
        return GAP_TV, reason
    what = group or f"B={B}"
    api = _models()
    if model is not None:
        info = api.load_model_info(model, folder)
        if api.covers(info.card, B, density):
            return os.fspath(model), None
        return GAP_TV, f"model {info.name} is not trained for {what} at mask density {density:.2f}"
    info = api.find_model(B, density, folder)
    if info is None:
        return GAP_TV, f"no trained network for {what} at mask density {density:.2f}"
    return info.name, None


def get_decoder(name: str | os.PathLike, *, device=None, folder: str | os.PathLike | None = None,
                **options) -> GapTv | Network:
    """The decoder object of a name from :func:`select_decoder` (or a model path).

    ``options`` are :class:`GapTv` settings for ``"gap-tv"``, and :class:`Network`
    options (``ensemble``, ``precision``, ``tile``, ``overlap``) for a network.
    """
    if os.fspath(name) == GAP_TV:
        return GapTv(device=device, **options)
    return Network(_models().load_model_info(name, folder), device=device, **options)


__all__ = [
    "GAP_TV",
    "METHODS",
    "GapTv",
    "Network",
    "decoder_names",
    "get_decoder",
    "network_precision",
    "networks_unavailable",
    "select_decoder",
]

"""Neural TCS decoders: ``tcs-unfold`` (default, deep-unfolded GAP) and ``tcs-tcsdl`` (paper).

- this package: the one map from network names to classes (:func:`build_network`),
  shared by decoding, training and the model cards
- :mod:`emcs.tcs.nets.api`: shipped models (:func:`~emcs.tcs.nets.api.find_model`,
  :func:`~emcs.tcs.nets.api.load_model_info`) and
  :func:`~emcs.tcs.nets.api.decode_measurements`
- :mod:`emcs.tcs.nets.unfold`, :mod:`emcs.tcs.nets.tcsdl`: the networks
- :mod:`emcs.tcs.nets.data`, :mod:`emcs.tcs.nets.train`: training samples and loop

Both networks take ``(y, masks)``: measurements (n, H, W) and 0/1 masks
(n or 1, B, H, W), with the forward model of :mod:`emcs.tcs.operator`.
Importing this package does not import torch.

>>> architecture("unfold"), architecture("tcs-tcsdl-v1")
('tcs-unfold-v1', 'tcs-tcsdl-v1')
>>> build_network("unfold", stages=1, width=8).config  # doctest: +SKIP
{'stages': 1, 'width': 8, 'depth': 3}
"""

from __future__ import annotations

import functools
import importlib

from emcs.errors import EmcsError

#: short network name (``emcs train tcs --model``) -> architecture id (model card ``architecture``)
ARCHITECTURES = {"unfold": "tcs-unfold-v1", "tcsdl": "tcs-tcsdl-v1"}
#: architecture id -> (module, class) of the network
_CLASSES = {
    "tcs-unfold-v1": ("emcs.tcs.nets.unfold", "UnfoldNet"),
    "tcs-tcsdl-v1": ("emcs.tcs.nets.tcsdl", "TcsDlNet"),
}


def architecture(name: str) -> str:
    """The architecture id of a short network name or of an id; EmcsError (param "model") otherwise."""
    arch = ARCHITECTURES.get(name, name)
    if arch not in _CLASSES:
        choices = ", ".join([*ARCHITECTURES, *_CLASSES])
        raise EmcsError(f"model must be one of {choices}, got {name!r}", param="model")
    return arch


def network_class(name: str) -> type:
    """The ``torch.nn.Module`` class of a network (short name or architecture id; imports torch)."""
    module, cls = _CLASSES[architecture(name)]
    return getattr(importlib.import_module(module), cls)


def build_network(name: str, **config):
    """A fresh (untrained) network by short name or architecture id, with constructor ``config``."""
    return network_class(name)(**config)


#: architecture id -> builder taking the card's ``config`` (for :func:`emcs.nn.weights.load_model`)
BUILDERS = {arch: functools.partial(build_network, arch) for arch in _CLASSES}

__all__ = ["ARCHITECTURES", "BUILDERS", "architecture", "build_network", "network_class"]

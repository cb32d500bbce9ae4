"""Neural TCS decoders: ``tcs-unfold`` (default, deep-unfolded GAP) and ``tcs-tcsdl`` (paper).

- :mod:`emcs.tcs.nets.api`: :func:`find_model`, :func:`decode_measurements` (used by ``emcs decode``)
- :mod:`emcs.tcs.nets.unfold`, :mod:`emcs.tcs.nets.tcsdl`: the networks
- :mod:`emcs.tcs.nets.data`, :mod:`emcs.tcs.nets.train`: training samples and loop

Importing this package does not import torch.
"""

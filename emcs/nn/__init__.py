"""Neural-network plumbing shared by the TCS, DLSS and SIM networks.

- :mod:`emcs.nn.weights` -- fp16 safetensors + JSON model cards, verified on load
- :mod:`emcs.nn.tiling`  -- overlap-and-blend tiling so any frame size runs in bounded memory
- :mod:`emcs.nn.device`  -- ``--device auto|cpu|cuda`` resolution
- :mod:`emcs.nn.ensemble` -- geometric self-ensembles (flips/rotations averaged)

Importing this package does not import torch; the submodules do.
"""

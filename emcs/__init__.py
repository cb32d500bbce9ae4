"""emcs: compressive sensing and neural reconstruction for microscopy data.

Capabilities live in one package each, over a shared I/O layer:

- :mod:`emcs.io`       -- lazy, memory-mapped reading and atomic writing of image stacks
- :mod:`emcs.tcs`      -- temporal compressive sensing: masks, encoder, container, decoders
- :mod:`emcs.simulate` -- physically simulated and procedural microscopy data
- :mod:`emcs.compare`  -- metrics and equal-bytes codec baselines
- :mod:`emcs.dlss`     -- sparse-scan STEM supersampling
- :mod:`emcs.sim`      -- structured illumination microscopy reconstruction
- :mod:`emcs.nn`       -- shared neural-network plumbing (weights + model cards, tiling)
"""

__version__ = "0.1.0"

"""Honest comparison of reconstructions: metrics, codec baselines at equal bytes, figures.

- :mod:`emcs.compare.metrics`: ``psnr``, ``ssim``, ``nrmse``, ``score_stack``,
  ``StackScorer`` (one data range for the whole reference stack).
- :mod:`emcs.compare.codecs`: ``CODECS``, ``encode_at_budget`` -> ``BaselineResult``
  (JPEG, JPEG 2000, JPEG XL searched to a total byte budget, never over it).
- :mod:`emcs.compare.plot`: the ``emcs compare --plot`` figure.

Submodules are imported on use (imagecodecs and matplotlib load only when needed).
"""

"""Honest comparison of reconstructions: metrics, codec baselines at equal bytes, figures.

- :mod:`emcs.compare.metrics`: the one definition of ``psnr``, ``ssim``, ``nrmse``
  in emcs, ``score_stack``, ``StackScorer`` (one data range for the whole
  reference stack), ``affine_fidelity`` (images in arbitrary intensity units).
- :mod:`emcs.compare.codec_frames`: encode / decode a stack with one setting of
  JPEG, JPEG 2000 or JPEG XL (bit depth, stretch).
- :mod:`emcs.compare.codecs`: ``encode_at_budget`` -> ``BaselineResult``
  (each codec searched to a total byte budget, never over it).
- :mod:`emcs.compare.report`: ``compare_stacks``, what ``emcs compare`` reports.
- :mod:`emcs.compare.files`: ``compare_files``, the file-level function behind
  ``emcs compare`` (validation, the figure).
- :mod:`emcs.compare.plot`: the ``emcs compare --plot`` figure.

``emcs.compare`` imports no capability (``tcs``, ``dlss``, ``sim``). Submodules
are imported on use (imagecodecs and matplotlib load only when needed).
"""

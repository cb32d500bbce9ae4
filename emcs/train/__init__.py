"""Training of the emcs networks (``emcs train tcs|dlss|sim``).

- :mod:`emcs.train.loop`: the one training loop (warm-up + cosine schedule, step /
  wall-clock / CPU-time budgets, checkpoint + resume, model-card writing).
- :mod:`emcs.train.tcs`, :mod:`emcs.train.dlss`, :mod:`emcs.train.sim`: one recipe per
  capability (network, batches, loss, model card).
- :mod:`emcs.train.folders`: training data from a user's own files.

Synthetic training data comes from :mod:`emcs.simulate`; the capabilities
(:mod:`emcs.tcs`, :mod:`emcs.dlss`, :mod:`emcs.sim`) import neither package.
Importing this package imports neither torch nor the data engine.
"""

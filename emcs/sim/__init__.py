"""emcs.sim: structured illumination microscopy (SIM) and VDL-SIM.

- :mod:`emcs.sim.otf` -- optics (wavelength, NA, pixel size) and the ideal OTF
- :mod:`emcs.sim.simulate` -- procedural structures, raw 3x3 SIM stacks, wide-field
  images, ground truth; :func:`~emcs.sim.simulate.write_sim_data` for ``emcs simulate sim``
- :mod:`emcs.sim.wiener` -- parameter estimation + generalised Wiener reconstruction
- :mod:`emcs.sim.decorrelation` -- resolution by decorrelation analysis
- :mod:`emcs.sim.background` -- rolling-ball background removal
- :mod:`emcs.sim.net`, :mod:`emcs.sim.train`, :mod:`emcs.sim.recon` -- the VDL-SIM
  network (wide-field frame -> 2x SR frame), its training and movie reconstruction
- :mod:`emcs.sim.reference` -- the ideal SIM image of a simulated truth, to score against
- :mod:`emcs.sim.files` -- ``emcs sim-recon`` and ``emcs resolution`` on files

Importing this package imports neither torch nor scikit-image.
"""

from emcs.sim.files import resolution_file, sim_recon_file

__all__ = ["resolution_file", "sim_recon_file"]

"""emcs.sim: structured illumination microscopy (SIM) and VDL-SIM.

- :mod:`emcs.sim.otf` -- optics (wavelength, NA, pixel size) and the ideal OTF
- :mod:`emcs.sim.wiener` -- parameter estimation + generalised Wiener reconstruction
- :mod:`emcs.sim.decorrelation` -- resolution by decorrelation analysis
- :mod:`emcs.sim.background` -- rolling-ball background removal
- :mod:`emcs.sim.net`, :mod:`emcs.sim.recon` -- the VDL-SIM network (wide-field frame
  -> 2x SR frame) and movie reconstruction (training: :mod:`emcs.train.sim`)
- :mod:`emcs.sim.rawnet` -- the raw-input network (the raw frames of a time point,
  through a Wiener front-end with estimated pattern parameters -> 2x SR frame)
- :mod:`emcs.sim.forward` -- the SIM image formation (patterns, OTF, 2x2 binning,
  out-of-focus layers)
- :mod:`emcs.sim.reference` -- the ideal SIM image of a simulated truth, to score against
- :mod:`emcs.sim.files` -- ``emcs sim-recon`` and ``emcs resolution`` on files

Importing this package imports neither torch nor scikit-image.
"""

from emcs.sim.files import resolution_file, sim_recon_file

__all__ = ["resolution_file", "sim_recon_file"]

"""Temporary alias of :mod:`emcs.sim.forward` for modules not yet switched to it.

The SIM forward model lives in :mod:`emcs.sim.forward`; the simulated data in
:mod:`emcs.simulate.fluorescence`. Delete this module once ``emcs/sim/wiener.py``
imports ``Pattern`` from :mod:`emcs.sim.forward`.
"""

from emcs.sim.forward import *  # noqa: F403
from emcs.sim.forward import __all__  # noqa: F401

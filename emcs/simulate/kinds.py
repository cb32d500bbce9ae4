"""Names and one-line descriptions of the simulated kinds (no heavy imports: the CLI help uses it)."""

from __future__ import annotations

PHYSICAL_KINDS = ("hrtem-particle", "hrtem-sintering", "haadf-crystal", "haadf-particle")
PROCEDURAL_KINDS = ("fibres", "lattice", "cells")
#: every kind; "sim" (structured illumination, optical) is produced by :mod:`emcs.sim`
KINDS = PHYSICAL_KINDS + PROCEDURAL_KINDS + ("sim",)

#: one-line description of each kind (shown by ``emcs simulate --help``)
KIND_HELP = {
    "hrtem-particle": "in-situ HRTEM (abTEM multislice, 300 kV) of an Au nanoparticle on amorphous carbon "
    "that drifts, rotates and reshapes",
    "hrtem-sintering": "HRTEM of two Au nanoparticles approaching and sintering (neck growth)",
    "haadf-crystal": "HAADF-STEM of crystals with grain boundaries and defects (incoherent Z^1.7 model "
    "x probe); frames differ by scan drift",
    "haadf-particle": "HAADF-STEM of Au nanoparticles on amorphous carbon (incoherent model)",
    "fibres": "carbon fibres deforming in a large field of view (procedural, bright field)",
    "lattice": "atomic lattices with grain boundaries, vacancies and dislocations (procedural)",
    "cells": "cells and membranes like serial-section TEM (procedural)",
    "sim": "structured-illumination (optical) raw 3x3 SIM stacks, wide-field frames and ground truth",
}

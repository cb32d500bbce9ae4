"""Make the example in-situ HRTEM movie used by the emcs demo and README.

Writes into ``emcs/examples/``, where emcs ships them as package data:

- ``au_movie.tif``: 40 frames of 128 x 128 camera counts (uint8), an Au
  nanoparticle drifting, rotating and reshaping on amorphous carbon, recorded
  at 100 e/Å² per frame (9 counts per 0.3 Å pixel on average) with Poisson
  shot noise; pixel size 0.3 Å in the file.
- ``au_movie_truth.tif``: the clean expected counts (float32), the mean of the
  noisy frames.

The simulation is abTEM multislice (300 kV, Cs = -20 µm, defocus -80 Å,
20 mrad aperture; simulated at 0.15 Å sampling on 256 x 256 and binned 2 x 2)
of an ASE Au cluster; see :mod:`emcs.simulate.hrtem`. It is
deterministic: the same seed and library versions give the same files, bit for
bit. Takes about 30 s on one free core (a third of it abTEM's start-up).

Usage::

    python examples/make_example.py [--force]

The same movie from the command line::

    emcs simulate hrtem-particle -o au_movie.tif --truth au_movie_truth.tif \\
        --frames 40 --size 128 128 --pixel-size 0.3 --dose 100 --seed 7
"""

from __future__ import annotations

import argparse
import os
import time

from emcs.io import write_stack
from emcs.simulate import movie

SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "emcs", "examples")
FRAMES, SIZE, DOSE, PIXEL, SEED = 40, (128, 128), 100.0, 0.3, 7


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    parser.add_argument("--out", default=os.path.normpath(SHIPPED),
                        help="output folder (default: emcs/examples, the shipped copy)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    result = movie("hrtem-particle", frames=FRAMES, size=SIZE, seed=SEED, dose=DOSE, pixel_size=PIXEL)
    noisy_path = os.path.join(args.out, "au_movie.tif")
    truth_path = os.path.join(args.out, "au_movie_truth.tif")
    write_stack(noisy_path, result.noisy, pixel_size=result.pixel_size, force=args.force)
    write_stack(truth_path, result.clean, pixel_size=result.pixel_size, force=args.force)
    print(f"wrote {noisy_path} {result.noisy.shape} {result.noisy.dtype} and {truth_path} "
          f"(pixel {result.pixel_size} Å, {result.meta['counts_per_pixel']:.1f} counts/pixel, "
          f"particle {result.meta['scene']['particle']}) in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()

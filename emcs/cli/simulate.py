"""``emcs simulate``: write a simulated movie (camera counts) and its clean truth."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from emcs.cli._app import app
from emcs.cli._common import FORCE_OPTION, JSON_OPTION, QUIET_OPTION, Reporter
from emcs.errors import EmcsError
from emcs.simulate.kinds import KIND_HELP, KINDS, PHYSICAL_KINDS

_KIND_LINES = "\n\n".join(f"{k}: {v}" for k, v in KIND_HELP.items())

_HELP = f"""Simulate a microscopy movie of KIND and write it (with --truth, also its clean version).

With --dose (e/Å² per frame) or --counts (mean counts per pixel) OUT holds integer camera counts (uint8 if they fit, else uint16) with Poisson shot noise, optional readout noise and detector blur; the truth file holds the expected counts (float32, the mean of OUT). Without a dose OUT holds the clean float32 intensity (max about 1). The pixel size is written in the files.

Kinds:

{_KIND_LINES}

Kind sim: --counts is the photon level S of one raw frame (99th percentile of the noise-free wide-field image; default 500, SNR = S / sqrt(S + B + σ²) with a background B of 10 photons and read noise σ of 1.5 e-). --out-of-focus F adds a second structure --defocus-um µm out of focus (default 1), lit by the same pattern: smooth, weakly modulated haze of mean F x S photons per pixel in every raw and wide-field frame (the truth holds the in-focus structure only).

Defaults: HRTEM 300 kV, Cs -20 µm, defocus -80 Å (abTEM sign: positive = underfocus), 20 mrad aperture, 30 Å focal spread, 0.2 Å pixels; HAADF 200 kV, 25 mrad probe, detector 60-200 mrad, 0.2 Å (crystal) or 0.25 Å (particle) pixels. HRTEM takes about 0.1 s per 128x128 frame and 0.4 s per 256x256 frame after about 10 s of start-up; the other kinds take milliseconds per frame.

Example: emcs simulate hrtem-particle -o au.tif --truth au_truth.tif --frames 40 --size 128 128 --pixel-size 0.3 --dose 100
"""

_NOT_SIM = tuple(k for k in KINDS if k != "sim")
# options that only some kinds take: option name -> kinds (kind "sim" has its own fixed
# optics and camera: no electron optics, drift, readout noise or detector blur options)
_KIND_OPTIONS = {
    "kv": PHYSICAL_KINDS,
    "defocus": PHYSICAL_KINDS,
    "cs": PHYSICAL_KINDS,
    "aperture": ("hrtem-particle", "hrtem-sintering"),
    "focal_spread": ("hrtem-particle", "hrtem-sintering"),
    "convergence": ("haadf-crystal", "haadf-particle"),
    "inner": ("haadf-crystal", "haadf-particle"),
    "outer": ("haadf-crystal", "haadf-particle"),
    "speed": _NOT_SIM,
    "readout_noise": _NOT_SIM,
    "mtf": _NOT_SIM,
    "out_of_focus": ("sim",),
    "defocus_um": ("sim",),
}
#: the electron-optics options, passed on to :func:`emcs.simulate.movie`
_OPTICS = ("kv", "defocus", "cs", "aperture", "focal_spread", "convergence", "inner", "outer")
_FLAG = {name: "--" + name.replace("_", "-") for name in _KIND_OPTIONS}


@app.command("simulate", help=_HELP)
def simulate_command(
    kind: str = typer.Argument(..., help=f"What to simulate: {', '.join(KINDS)}.", show_default=False),
    output: Path = typer.Option(..., "--output", "-o", help="Output stack (.tif, .mrc or .npy).",
                                show_default=False),
    frames: int = typer.Option(None, "--frames", "-t",
                               help="Number of frames (default 20; 1 for haadf-*; for sim: time points, each 9 raw frames, default 1)."),
    size: tuple[int, int] = typer.Option((256, 256), "--size", help="Frame height and width in pixels."),
    dose: float = typer.Option(None, "--dose", help="Electron dose per frame in e/Å² "
                               "(mean counts per pixel = dose x pixel size²)."),
    counts: float = typer.Option(None, "--counts", help="Mean counts per pixel (instead of --dose)."),
    seed: int = typer.Option(0, "--seed", help="Seed of everything random (structure, motion, noise)."),
    truth: Path = typer.Option(None, "--truth", help="Also write the clean truth (float32) here."),
    readout_noise: float = typer.Option(0.0, "--readout-noise", help="Gaussian readout noise, counts r.m.s."),
    mtf: float = typer.Option(0.0, "--mtf", help="Detector blur: Gaussian PSF sigma in pixels."),
    pixel_size: float = typer.Option(None, "--pixel-size",
                                     help="Å per pixel (default per kind: HRTEM 0.2, HAADF 0.2/0.25, "
                                     "lattice 0.3, fibres 20, cells 40)."),
    speed: float = typer.Option(None, "--speed", help="Drift in pixels per frame (default per kind)."),
    kv: float = typer.Option(None, "--kv", help="Accelerating voltage, kV (default HRTEM 300, HAADF 200)."),
    defocus: float = typer.Option(None, "--defocus", help="Defocus, Å, abTEM sign (default HRTEM -80, HAADF 0)."),
    cs: float = typer.Option(None, "--cs", help="Spherical aberration Cs, µm (default HRTEM -20, HAADF 0)."),
    aperture: float = typer.Option(None, "--aperture", help="HRTEM objective aperture, mrad (default 20)."),
    focal_spread: float = typer.Option(None, "--focal-spread", help="HRTEM focal spread, Å (default 30)."),
    convergence: float = typer.Option(None, "--convergence", help="HAADF probe semi-angle, mrad (default 25)."),
    inner: float = typer.Option(None, "--inner", help="HAADF detector inner angle, mrad (default 60)."),
    outer: float = typer.Option(None, "--outer", help="HAADF detector outer angle, mrad (default 200)."),
    out_of_focus: float = typer.Option(0.0, "--out-of-focus", metavar="FRACTION",
                                       help="sim: mean out-of-focus haze per pixel as a fraction of "
                                       "--counts (0: none)."),
    defocus_um: float = typer.Option(None, "--defocus-um", metavar="UM",
                                     help="sim: distance of the out-of-focus layer from the focal "
                                     "plane, µm (default 1; needs --out-of-focus)."),
    force: bool = FORCE_OPTION,
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    rep = Reporter(quiet, as_json)
    if kind not in KINDS:
        raise EmcsError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    given = {"kv": kv, "defocus": defocus, "cs": None if cs is None else cs * 1e4, "aperture": aperture,
             "focal_spread": focal_spread, "convergence": convergence, "inner": inner, "outer": outer,
             "speed": speed, "readout_noise": readout_noise or None, "mtf": mtf or None,
             "out_of_focus": out_of_focus or None, "defocus_um": defocus_um}
    for name, value in given.items():
        if value is not None and kind not in _KIND_OPTIONS[name]:
            raise EmcsError(f"{_FLAG[name]} does not apply to kind {kind!r}")
    h, w = size
    if not (16 <= h <= 8192 and 16 <= w <= 8192):
        raise EmcsError(f"--size must be between 16 and 8192 pixels per side, got {h} {w}")
    if frames is not None and frames < 1:
        raise EmcsError(f"--frames must be at least 1, got {frames}")
    if dose is not None and counts is not None:
        raise EmcsError("give --dose or --counts, not both")
    for name, value in (("--dose", dose), ("--counts", counts)):
        if value is not None and not value > 0:
            raise EmcsError(f"{name} must be positive, got {value}")
    for name, value in (("--readout-noise", readout_noise), ("--mtf", mtf)):
        if value < 0:
            raise EmcsError(f"{name} must be >= 0, got {value}")
    if (readout_noise or mtf) and dose is None and counts is None:
        raise EmcsError("--readout-noise and --mtf need a --dose or --counts (a camera)")
    if pixel_size is not None and not pixel_size > 0:
        raise EmcsError(f"--pixel-size must be positive, got {pixel_size}")
    from emcs.io import WRITE_SUFFIXES, check_output

    for path in (output, truth):
        if path is not None and not str(path).lower().endswith(WRITE_SUFFIXES):
            raise EmcsError(f"unsupported output type; write {', '.join(WRITE_SUFFIXES)}", path)
    if truth is not None and Path(truth).resolve() == Path(output).resolve():
        raise EmcsError("--truth must differ from the output file", truth)
    check_output(output, force)
    if truth is not None:
        check_output(truth, force)

    if kind == "sim":
        if pixel_size is not None:
            raise EmcsError("--pixel-size (Å) does not apply to kind 'sim': its optics are fixed "
                            "(pixel sizes in nm in the JSON's pixel_size_nm)")
        if defocus_um is not None and not out_of_focus:
            raise EmcsError("--defocus-um places the out-of-focus layer: give --out-of-focus too")
        _simulate_sim(rep, output, frames, size, seed, dose, counts, truth, force,
                      out_of_focus=out_of_focus, defocus_um=1.0 if defocus_um is None else defocus_um)
        return

    options = {name: given[name] for name in _OPTICS if given[name] is not None}
    if pixel_size is not None:
        options["pixel_size"] = pixel_size
    if speed is not None:
        if speed < 0:
            raise EmcsError(f"--speed must be >= 0, got {speed}")
        options["speed"] = speed
    if frames is None:
        frames = 1 if kind.startswith("haadf") else 20

    from emcs.io import write_stack
    from emcs.simulate import movie

    t0 = time.time()
    slow = kind.startswith("hrtem")
    with rep.progress(f"Simulating {kind}", frames if slow else None) as advance:
        result = movie(kind, frames, (h, w), seed=seed, dose=dose, counts=counts, readout_noise=readout_noise,
                       mtf_sigma=mtf, progress=(lambda: advance(1)) if slow else None, **options)
    data = result.noisy if result.noisy is not None else result.clean
    write_stack(output, data, pixel_size=result.pixel_size, force=force)
    if truth is not None:
        write_stack(truth, result.clean, pixel_size=result.pixel_size, force=force)
    seconds = time.time() - t0
    summary = {
        "kind": kind,
        "output": str(output),
        "truth": None if truth is None else str(truth),
        "shape": list(data.shape),
        "dtype": str(data.dtype),
        "pixel_size_A": result.pixel_size,
        "mean": float(data.mean()),
        "seconds": round(seconds, 3),
        "meta": result.meta,
    }
    rep.table(f"emcs simulate {kind}", [
        ("output", f"{output} {data.shape[0]}x{data.shape[1]}x{data.shape[2]} {data.dtype}"),
        ("truth", str(truth) if truth is not None else "-"),
        ("pixel size", f"{result.pixel_size:g} Å"),
        ("mean", f"{summary['mean']:.3f}" + (" counts/pixel" if result.noisy is not None else "")),
        ("time", f"{seconds:.1f} s"),
    ])
    rep.emit_json(summary)


def _simulate_sim(rep, output, frames, size, seed, dose, counts, truth, force, out_of_focus: float,
                  defocus_um: float) -> None:
    if dose is not None:
        raise EmcsError("kind 'sim' is optical: give --counts (photons per pixel), not --dose")
    from emcs.simulate.fluorescence import write_sim_data

    t0 = time.time()
    summary = write_sim_data(str(output), frames=1 if frames is None else frames, size=tuple(size), seed=seed,
                             counts=counts, truth=None if truth is None else str(truth), force=force,
                             out_of_focus=out_of_focus, defocus_um=defocus_um)
    summary = dict(summary or {})
    summary.setdefault("kind", "sim")
    summary.setdefault("output", str(output))
    summary.setdefault("seconds", round(time.time() - t0, 3))
    rows = [(str(k), _haze_text(v) if k == "out_of_focus" else str(v)) for k, v in summary.items()
            if k == "out_of_focus" or not isinstance(v, (dict, list))]
    rep.table("emcs simulate sim", rows)
    rep.emit_json(summary)


def _haze_text(haze: dict | None) -> str:
    if not haze:
        return "none"
    return (f"{haze['fraction']:g} x counts = {haze['mean_photons']:g} photons/pixel, "
            f"{haze['defocus_um']:g} µm out of focus")

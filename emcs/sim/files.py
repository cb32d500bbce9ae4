"""File-level SIM: super-resolve a movie file, measure the resolution of an image file.

The public entry points behind ``emcs sim-recon`` and ``emcs resolution``: they
validate their parameters once (errors name the parameter,
:class:`~emcs.errors.EmcsError` with ``param=``), stream the stack time point by
time point through :mod:`emcs.io` and return a summary dict.

Progress is reported through ``progress(total)``, called once with the number
of items; it returns an ``advance(n)`` callable (both optional).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import numpy as np

from emcs.errors import EmcsError

#: what a frame of the input is: one wide-field exposure, or one raw SIM frame.
INPUT_KINDS = ("widefield", "raw")
#: reconstruction methods: the VDL-SIM network, classical Wiener SIM.
METHODS = ("net", "wiener")
#: background removal applied to each SR frame.
BACKGROUNDS = ("none", "rolling-ball")

Progress = Callable[[int], Callable[[int], None]]


def _no_progress(_total: int) -> Callable[[int], None]:
    return lambda n=1: None


def _choice(value: str, options: tuple[str, ...], param: str) -> str:
    v = (value or "").strip().lower()
    if v not in options:
        raise EmcsError(f"{param} must be one of {', '.join(options)}, got {value!r}", param=param)
    return v


def _positive(value: float, param: str) -> float:
    if not value > 0:
        raise EmcsError(f"{param} must be positive, got {value}", param=param)
    return float(value)


def _frames(stack, optics, method: str, input_kind: str, layout: tuple[int, int, str], settings: dict,
            params: list) -> tuple[Iterator[np.ndarray], dict | None]:
    """SR frames of ``stack`` (lazy) and the network's card (None for Wiener)."""
    from emcs.sim import recon
    from emcs.sim.wiener import WienerSettings

    angles, phases, order = layout
    wiener = WienerSettings(wiener=settings["wiener"], apodization=settings["apodization"])
    if method == "wiener":
        return recon.iter_wiener(stack, optics, angles, phases, order, wiener, params), None
    from emcs.nn.device import pick_device
    from emcs.sim.rawnet import ARCHITECTURE as RAW_ARCHITECTURE

    dev = pick_device(settings["device"])
    model, card = recon.load_network(settings["weights"], dev, input_kind)
    if card.get("architecture") == RAW_ARCHITECTURE:
        if input_kind != "raw":
            raise EmcsError("input_kind must be 'raw' for the raw-input network "
                            f"{card.get('name', '')!r}: it reconstructs from the raw SIM frames",
                            param="input_kind")
        return recon.iter_raw_net(stack, model, optics, angles, phases, order, dev, settings["tile"],
                                  wiener, params), card
    frames = (recon.net_frame(model, f, dev, settings["tile"]) for f in
              recon.iter_widefield(stack, input_kind, angles, phases, order))
    return frames, card


def default_method(input_kind: str, weights=None) -> str:
    """``net`` for wide-field input or given ``weights``; for raw input ``net`` where the
    raw-input network is installed (:data:`emcs.sim.recon.DEFAULT_RAW_WEIGHTS`), else ``wiener``."""
    from emcs.sim.recon import raw_network

    if input_kind == "widefield" or weights is not None:
        return "net"
    return "net" if raw_network() is not None else "wiener"


def sim_recon_file(
    input: str | os.PathLike,
    output: str | os.PathLike,
    *,
    input_kind: str = "widefield",
    method: str | None = None,
    angles: int = 3,
    phases: int = 3,
    order: str = "angle-major",
    wavelength: float = 525.0,
    na: float = 1.4,
    pixel_size: float | None = None,
    wiener: float = 0.08,
    apodization: float = 1.0,
    background: str = "none",
    radius: float = 5.0,
    weights: str | os.PathLike | None = None,
    device: str = "auto",
    tile: int = 256,
    force: bool = False,
    progress: Progress | None = None,
) -> dict:
    """Super-resolve a wide-field movie (VDL-SIM) or raw SIM stacks (Wiener or network).

    Every time point gives one float32 SR frame on a 2x finer grid, written as
    it is made (memory bounded by one time point).

    Parameters
    ----------
    input, output : path
        The movie (any :func:`emcs.io.open_stack` format) and the SR stack to
        write (never overwritten unless ``force``).
    input_kind : {'widefield', 'raw'}
        One wide-field frame per time point, or ``angles x phases`` raw frames.
    method : {'net', 'wiener'}, optional
        Default: :func:`default_method` (the network; for raw input without ``weights``
        Wiener where the raw-input network is not installed). ``net`` on raw input runs the raw-input
        network (:mod:`emcs.sim.rawnet`), or a wide-field network given as ``weights``
        on the sum of the raw frames.
    angles, phases, order
        Raw frame layout: pattern orientations, phase steps, and
        ``angle-major`` (frame = angle*P + phase) or ``phase-major``.
    wavelength, na : float
        Emission wavelength (nm) and numerical aperture.
    pixel_size : float, optional
        Camera pixel size in nm (default: from the file; Wiener needs one).
    wiener, apodization : float
        Wiener parameter and apodisation cut-off (fraction of ``f_c + |k|``).
    background : {'none', 'rolling-ball'}
        Background removal of each SR frame, ball ``radius`` in SR pixels.
    weights : path, optional
        Network weights (default: :func:`emcs.sim.recon.default_weights` -- ``vdlsim-32``
        for wide-field input, ``vdlsim-raw`` for raw input).
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    tile : int
        Network tile in input pixels (>= 32; bounds memory).
    force : bool
        Overwrite an existing output.
    progress : callable, optional
        ``progress(total) -> advance(n)`` (see the module notes).

    Returns
    -------
    dict
        The run's summary; for Wiener also the optics, settings and the
        estimated pattern ``parameters`` of every time point.
    """
    from emcs.io import StackWriter, check_output, open_stack
    from emcs.sim.otf import Optics, check_sr_grid
    from emcs.sim.recon import ORDERS, validate_raw_layout

    input_kind = _choice(input_kind, INPUT_KINDS, "input_kind")
    method = _choice(method or default_method(input_kind, weights), METHODS, "method")
    order = _choice(order, ORDERS, "order")
    background = _choice(background, BACKGROUNDS, "background")
    if method == "wiener" and input_kind != "raw":
        raise EmcsError("input_kind must be 'raw' for the Wiener method: a wide-field movie has no "
                        "structured illumination to reconstruct from", param="input_kind")
    for param, value in (("wavelength", wavelength), ("na", na), ("wiener", wiener),
                         ("apodization", apodization)):
        _positive(value, param)
    if tile < 32:
        raise EmcsError(f"tile must be at least 32, got {tile}", param="tile")
    if background == "rolling-ball":
        _positive(radius, "radius")
    check_output(output, force)
    with open_stack(input) as stack:
        T_in, H, W = stack.shape
        n_out = T_in
        if input_kind == "raw":
            n_out = validate_raw_layout(T_in, angles, phases, order, input)
        if pixel_size is not None:
            px_nm = _positive(pixel_size, "pixel_size")
        elif stack.pixel_size:
            px_nm = stack.pixel_size / 10.0
        else:
            px_nm = None
        # Wiener and the raw-input network estimate the pattern: they need the optics
        physical = input_kind == "raw" and (method == "wiener" or _raw_network_chosen(weights))
        if physical and px_nm is None:
            raise EmcsError("pixel_size must be given (camera pixel in nm): the file records none",
                            input, param="pixel_size")
        optics = Optics(wavelength, na, px_nm or 80.0)
        if physical:
            check_sr_grid(optics, input)
        params: list = []
        t0 = time.time()
        settings = {"wiener": wiener, "apodization": apodization, "device": device,
                    "weights": weights, "tile": tile}
        frames, card = _frames(stack, optics, method, input_kind, (angles, phases, order), settings,
                               params)
        notes = [note] if physical and card and (note := optics_note(card, optics)) else []
        if background == "rolling-ball":
            from emcs.sim.background import remove_background

            frames = (remove_background(f, radius) for f in frames)
        out_px = stack.pixel_size / 2.0 if stack.pixel_size and pixel_size is None else (
            px_nm * 5.0 if px_nm else None)
        with StackWriter(output, (n_out, 2 * H, 2 * W), np.float32, pixel_size=out_px, force=force) as w:
            advance = (progress or _no_progress)(n_out)
            for f in frames:
                w.write(f)
                advance(1)
        elapsed = time.time() - t0
    summary = {
        "input": os.fspath(input), "output": os.fspath(output), "input_kind": input_kind,
        "method": method, "frames_in": T_in, "frames_out": n_out, "shape_out": [n_out, 2 * H, 2 * W],
        "pixel_size_nm_in": px_nm, "pixel_size_nm_out": px_nm / 2 if px_nm else None,
        "seconds": round(elapsed, 3), "frames_per_s": round(n_out / elapsed, 3) if elapsed > 0 else None,
        "background": background, "notes": notes,
    }
    if params:
        summary.update({"optics": optics.to_dict(), "apodization": apodization, "order": order,
                        "angles": angles, "phases": phases, "parameters": params})
    if method == "wiener":
        summary["wiener"] = wiener
    else:
        summary["weights"] = card.get("name", weights) if card else weights
    return summary


#: relative difference of the OTF cut-off (cycles per camera pixel) from the raw network's
#: training optics above which :func:`optics_note` speaks
OPTICS_TOLERANCE = 0.1


def optics_note(card: dict, optics) -> str | None:
    """A note when ``optics`` put the OTF cut-off elsewhere on the camera grid than the raw
    network's training optics (the card's ``optics``) did, else None.

    The network sees the raw frames in camera pixels: what it learned depends on
    the cut-off 2 NA / wavelength in cycles per pixel, not on the three numbers apart.

    Examples
    --------
    >>> from emcs.sim.otf import Optics
    >>> card = {"name": "net", "optics": {"wavelength_nm": 525, "na": 1.4, "pixel_nm": 80}}
    >>> optics_note(card, Optics(525, 1.4, 80)) is None
    True
    >>> optics_note(card, Optics(488, 1.2, 65))[:60]
    'the network net was trained at 525 nm, NA 1.4, 80 nm pixels '
    """
    from emcs.sim.otf import Optics

    trained = card.get("optics")
    if not trained:
        return None
    trained = Optics(**trained)
    have, want = optics.cutoff_per_pixel, trained.cutoff_per_pixel
    if abs(have / want - 1) <= OPTICS_TOLERANCE:
        return None
    return (f"the network {card.get('name', '')} was trained at {trained.wavelength_nm:g} nm, NA "
            f"{trained.na:g}, {trained.pixel_nm:g} nm pixels (OTF cut-off {want:.3f} cycles/pixel); "
            f"these optics put it at {have:.3f}, outside its training: compare with --method wiener")


def _raw_network_chosen(weights) -> bool:
    """Whether ``weights`` (None: the default for raw input) is a raw-input network."""
    from emcs.nn.weights import read_card
    from emcs.sim.rawnet import ARCHITECTURE
    from emcs.sim.recon import default_weights

    try:
        card = read_card(weights or default_weights("raw"))
    except EmcsError:
        return False  # loading the network reports the problem
    return card.get("architecture") == ARCHITECTURE


def pattern_warnings(patterns: list[dict]) -> list[str]:
    """Warnings for estimated patterns (of one time point) that point to a wrong frame order.

    Parameters
    ----------
    patterns : list of dict
        One dict per angle, as in ``sim_recon_file(...)["parameters"][t]``.

    Returns
    -------
    list of str
        Empty when the estimates look sound.
    """
    out = []
    ang = [p["angle_deg"] % 180.0 for p in patterns]
    for i in range(len(ang)):
        for j in range(i + 1, len(ang)):
            d = abs(ang[i] - ang[j]) % 180.0
            if min(d, 180.0 - d) < 10.0:
                out.append(f"angles {i} and {j} have the same pattern orientation ({ang[i]:.1f} deg): "
                           "the frame order is probably wrong (check the order, angles and phases)")
    weak = [a for a, p in enumerate(patterns) if p.get("peak_contrast", 99) < 5 or p["modulation"] < 0.1]
    if weak:
        out.append(f"weak pattern peaks for angle(s) {weak}: parameter estimation may have failed "
                   "(low SNR, or a wrong order, angles or phases)")
    return out


def resolution_file(
    image: str | os.PathLike,
    pixel_size: float | None = None,
    frame: int | None = None,
    *,
    progress: Progress | None = None,
) -> dict:
    """Resolution of every frame of an image file by decorrelation analysis.

    Uses :func:`emcs.sim.decorrelation.decorrelation_resolution` (Descloux,
    Grussmayer and Radenovic, *Nature Methods* 16, 918, 2019). Never use it on
    zero-padded or upsampled images: the empty band makes the value meaningless.

    Parameters
    ----------
    image : path
        Image or stack on its native sampling grid.
    pixel_size : float, optional
        Pixel size in nm (default: from the file).
    frame : int, optional
        Analyse only this frame (default: every frame).
    progress : callable, optional
        ``progress(total) -> advance(n)`` (see the module notes).

    Returns
    -------
    dict
        ``image``, ``pixel_size_nm``, ``frames``, ``resolution_nm`` (median
        over the frames with a finite value, ``inf`` if none) and
        ``per_frame`` (one result dict per analysed frame).
    """
    from emcs.io import open_stack
    from emcs.sim.decorrelation import decorrelation_resolution

    with open_stack(image) as stack:
        if pixel_size is not None:
            px = _positive(pixel_size, "pixel_size")
        elif stack.pixel_size:
            px = stack.pixel_size / 10.0
        else:
            raise EmcsError("pixel_size must be given (in nm): the file records none", image,
                            param="pixel_size")
        T = stack.shape[0]
        if frame is not None and not 0 <= frame < T:
            raise EmcsError(f"frame {frame} is out of range (the stack has {T} frames)", image,
                            param="frame")
        idx = [frame] if frame is not None else list(range(T))
        results = []
        advance = (progress or _no_progress)(len(idx))
        for i in idx:
            r = decorrelation_resolution(stack[i], px)
            r["frame"] = i
            results.append(r)
            advance(1)
    values = np.array([r["resolution_nm"] for r in results])
    finite = values[np.isfinite(values)]
    med = float(np.median(finite)) if finite.size else float("inf")
    return {"image": os.fspath(image), "pixel_size_nm": px, "frames": len(results),
            "resolution_nm": med, "per_frame": results}


__all__ = [
    "BACKGROUNDS",
    "INPUT_KINDS",
    "METHODS",
    "default_method",
    "optics_note",
    "pattern_warnings",
    "resolution_file",
    "sim_recon_file",
]

"""Standard image codecs as baselines at an equal byte budget: the budget search.

:func:`encode_at_budget` encodes every frame of a (T, H, W) stack with JPEG,
JPEG 2000 or JPEG XL (through :mod:`imagecodecs`, one thread) and searches the
codec's quality knob, applied uniformly to all frames, for the best quality
whose TOTAL size over all frames does not exceed a byte budget. The result
never exceeds the budget; if even the lowest quality does, the result says so
(``decoded is None`` and ``reason`` explains).

Quality knobs (``BaselineResult.quality``; higher quality = more bytes):

- ``jpeg``: libjpeg quality, integer 1 .. 100 (baseline JPEG, 8-bit grey,
  optimized Huffman tables);
- ``jpeg2000``: OpenJPEG's PSNR target in dB, 1 .. 100 (0.25 dB steps), then
  lossless (reversible 5/3 wavelet); raw J2K codestream;
- ``jpegxl``: libjxl butteraugli distance, 25 .. 0.05 (lower is better, 2 %
  steps), then lossless; effort 7 (the libjxl default).

Search: the lowest setting, lossless, the highest setting, then bisection;
for more than 8 frames a coarse search on 8 evenly spaced frames gives a
starting point that is bracketed on all frames (3-5 encodings of the stack).

What is counted in ``nbytes``: the sum of the per-frame codestreams (no file
container around them) plus the stretch parameters (8 bytes per frame,
or 8 bytes for the stack). Frame shape and dtype are not counted. Bit depth and
the stretch: :mod:`emcs.compare.codec_frames`.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> frames = (rng.random((3, 64, 64)) * 255).astype(np.uint8)
>>> res = encode_at_budget(frames, "jpeg", 6000)
>>> res.ok, res.nbytes <= 6000, res.decoded.dtype, res.decoded.shape
(True, True, dtype('uint8'), (3, 64, 64))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from emcs.compare.codec_frames import (
    CODEC_LABELS,
    CODECS,
    PARAMETERS,
    codec_dtype,
    decode_frames,
    encode_prepared,
    prepare_frames,
    side_bytes,
    stretch_mode,
    takes_as_is,
)

__all__ = [
    "CODECS",
    "CODEC_LABELS",
    "BaselineResult",
    "encode_at_budget",
]


@dataclass
class BaselineResult:
    """A codec baseline encoded at a byte budget.

    Attributes
    ----------
    codec : str
        One of :data:`CODECS`.
    decoded : ndarray or None
        The decoded (T, H, W) frames in the input dtype; None if the budget is
        too small even for the lowest quality.
    nbytes : int
        Total bytes: codestreams + stretch parameters (0 when ``decoded`` is None).
    quality : float or None
        The setting used for all frames (see :data:`PARAMETERS`); None if
        lossless or failed.
    bits_per_pixel : float
        ``8 * nbytes / (T * H * W)``.
    budget_bytes : int
        The budget searched against.
    parameter : str
        What ``quality`` means for this codec.
    lossless : bool
        True when the codec's lossless mode fit the budget.
    stretch : str
        "none", "frame" or "global" (see :mod:`emcs.compare.codec_frames`).
    codec_dtype : str
        The integer type handed to the codec ("uint8" or "uint16").
    side_bytes : int
        Bytes of stretch parameters included in ``nbytes``.
    trials : int
        Encodings of the stack tried during the search.
    reason : str or None
        Why there is no result, when ``decoded`` is None.
    frame_bytes : list of int
        Codestream size per frame.
    """

    codec: str
    decoded: np.ndarray | None
    nbytes: int
    quality: float | None
    bits_per_pixel: float
    budget_bytes: int = 0
    parameter: str = ""
    lossless: bool = False
    stretch: str = "none"
    codec_dtype: str = "uint8"
    side_bytes: int = 0
    trials: int = 0
    reason: str | None = None
    frame_bytes: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when a setting fit the budget."""
        return self.decoded is not None

    @property
    def label(self) -> str:
        return CODEC_LABELS.get(self.codec, self.codec)

    def setting_text(self) -> str:
        """The setting in words, e.g. ``"quality 57"`` or ``"lossless"``."""
        if not self.ok:
            return "none fits"
        if self.lossless:
            return "lossless"
        if self.codec == "jpeg":
            return f"quality {int(self.quality)}"
        if self.codec == "jpeg2000":
            return f"PSNR target {self.quality:.2f} dB"
        return f"distance {self.quality:.3f}"

    def summary(self) -> dict:
        """The result without the pixels (for JSON)."""
        return {
            "codec": self.codec,
            "ok": self.ok,
            "nbytes": self.nbytes,
            "budget_bytes": self.budget_bytes,
            "bits_per_pixel": self.bits_per_pixel,
            "setting": self.setting_text(),
            "parameter": self.parameter,
            "quality": self.quality,
            "lossless": self.lossless,
            "stretch": self.stretch,
            "codec_dtype": self.codec_dtype,
            "side_bytes": self.side_bytes,
            "trials": self.trials,
            "reason": self.reason,
        }


# --------------------------------------------------------------------------- search
def _ladder(codec: str) -> tuple[float, float, float, bool, bool]:
    """(lowest, highest, tolerance, is_integer, has_lossless) in search units.

    Search units increase with quality: JPEG quality; JPEG 2000 PSNR target;
    JPEG XL ``-log(distance)``.
    """
    if codec == "jpeg":
        return 1.0, 100.0, 1.0, True, False
    if codec == "jpeg2000":
        return 1.0, 100.0, 0.25, False, True
    if codec == "jpegxl":
        return -math.log(25.0), -math.log(0.05), 0.02, False, True
    raise ValueError(f"unknown codec {codec!r}; choose from {', '.join(CODECS)}")


def _setting(codec: str, u: float):
    if codec == "jpeg":
        return int(round(u))
    if codec == "jpegxl":
        return float(math.exp(-u))
    return float(u)


_SUBSET_FRAMES = 8
_FAIL = "fail"


def _search(frames, codec, budget_bytes, mode, progress, guess, coarse=1.0):
    """Find the best fitting setting.

    Returns ``((u, lossless, streams, stretch params, stretch mode) or None, trials)``.

    Without a guess: lowest setting, then lossless, then highest, then
    bisection. With a guess ``(u, lossless)`` from a subset of the frames: try
    it, grow a bracket around it by doubling steps, then bisect; usually fewer
    encodings of the whole stack.
    """
    lo_u, hi_u, tol, integer, has_lossless = _ladder(codec)
    tol *= coarse
    trials = 0
    best = None
    prepared, params, _ = prepare_frames(frames, codec, mode)
    # lossless modes take uint8 / uint16 data as they are: a stretch would only
    # spread the values apart and cost bytes
    native = takes_as_is(codec, frames.dtype)
    ll_mode = "none" if native else mode
    ll_prepared, ll_params = (frames, None) if native else (prepared, params)

    def snap(u: float) -> float:
        u = min(max(u, lo_u), hi_u)
        return float(round(u)) if integer else u

    def attempt(u: float, lossless: bool = False) -> bool:
        nonlocal trials, best
        trials += 1
        if lossless:
            streams = encode_prepared(ll_prepared, codec, None, True, ll_mode, budget_bytes)
        else:
            streams = encode_prepared(
                prepared, codec, _setting(codec, u), False, mode, budget_bytes
            )
        if progress is not None:
            progress()
        if streams is None:
            return False
        if best is None or lossless or (not best[1] and u > best[0]):
            best = (u, lossless, streams) + ((ll_params, ll_mode) if lossless else (params, mode))
        return True

    def bisect(good: float, bad: float) -> None:
        while bad - good > tol:
            mid = (good + bad) / 2
            if integer:
                mid = float(math.floor(mid))
                if mid <= good:
                    break
            if attempt(mid):
                good = mid
            else:
                bad = mid

    if guess is None:
        if not attempt(lo_u):
            return None, trials
        if has_lossless and attempt(hi_u, lossless=True):
            return best, trials
        if not attempt(hi_u):
            bisect(lo_u, hi_u)
        return best, trials

    if guess == _FAIL:
        g = lo_u
    elif guess[1]:  # lossless fit the subset
        if attempt(hi_u, lossless=True):
            return best, trials
        g = hi_u
    else:
        g = snap(guess[0])
    step = 2 * tol
    if attempt(g):
        good = g
        while True:
            if good >= hi_u:
                if has_lossless and guess != _FAIL and not guess[1]:
                    attempt(hi_u, lossless=True)
                return best, trials
            probe = snap(good + step)
            if attempt(probe):
                good, step = probe, 2 * step
            else:
                bisect(good, probe)
                return best, trials
    bad = g
    while True:
        if bad <= lo_u:
            return None, trials
        probe = snap(bad - step)
        if attempt(probe):
            bisect(probe, bad)
            return best, trials
        bad, step = probe, 2 * step


def encode_at_budget(
    frames,
    codec: str,
    budget_bytes: int,
    stretch: str = "auto",
    progress: Callable[[], None] | None = None,
) -> BaselineResult:
    """Best-quality encoding of all frames whose total size fits a byte budget.

    The codec's quality knob (the same value for every frame) is bisected
    between its lowest and highest setting (and the lossless mode, where the
    codec has one); every trial encodes the whole stack and only trials whose
    total size is <= ``budget_bytes`` are kept, so the result never exceeds
    the budget. Sizes are nearly but not strictly monotonic in the knob, so the
    result is the best setting found by the bisection, within its tolerance.
    For more than 8 frames a first search on 8 evenly spaced frames (budget
    scaled to them) gives a starting point, and the search on all frames
    brackets it with doubling steps; the result is still checked on all frames.

    Parameters
    ----------
    frames : array_like (T, H, W) or (H, W)
        Any numeric dtype (see the module notes on bit depth and stretch).
    codec : str
        "jpeg", "jpeg2000" or "jpegxl".
    budget_bytes : int
        Total bytes allowed for all frames, stretch parameters included.
    stretch : str
        "auto" (default), "frame", "global" or "none".
    progress : callable, optional
        Called once after every trial encoding of the stack.

    Returns
    -------
    BaselineResult
        ``decoded`` has the input's shape (T, H, W) and dtype; ``decoded`` is
        None (and ``reason`` says why) if no setting fits.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(1).normal(1000, 50, (2, 32, 32)).astype(np.uint16)
    >>> r = encode_at_budget(x, "jpegxl", 1500)
    >>> r.ok, r.nbytes <= 1500, r.decoded.dtype, r.stretch
    (True, True, dtype('uint16'), 'frame')
    >>> encode_at_budget(x, "jpeg", 10).reason.startswith("even the lowest")
    True
    """
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose from {', '.join(CODECS)}")
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3 or frames.size == 0:
        raise ValueError(f"expected (T, H, W) frames, got shape {frames.shape}")
    if frames.dtype.kind not in "uif":
        raise ValueError(f"cannot encode {frames.dtype} data")
    budget_bytes = int(budget_bytes)
    n_pix = frames.size
    mode = stretch_mode(codec, frames.dtype, stretch)
    cdtype = codec_dtype(codec, frames.dtype)
    base = dict(
        codec=codec,
        budget_bytes=budget_bytes,
        parameter=PARAMETERS[codec],
        stretch=mode,
        codec_dtype=str(cdtype),
    )
    guess = None
    if len(frames) > _SUBSET_FRAMES:
        # a cheap first search on evenly spaced frames gives a starting point
        idx = np.linspace(0, len(frames) - 1, _SUBSET_FRAMES).round().astype(int)
        sub_budget = budget_bytes * _SUBSET_FRAMES // len(frames)
        guess, _ = _search(frames[idx], codec, sub_budget, mode, None, None, coarse=4.0)
        guess = _FAIL if guess is None else guess[:2]
    best, trials = _search(frames, codec, budget_bytes, mode, progress, guess)
    if best is None:
        lo_u = _ladder(codec)[0]
        return BaselineResult(
            decoded=None,
            nbytes=0,
            quality=None,
            bits_per_pixel=0.0,
            trials=trials,
            side_bytes=side_bytes(mode, len(frames)),
            reason=(
                f"even the lowest {CODEC_LABELS[codec]} setting "
                f"({PARAMETERS[codec]} = {_setting(codec, lo_u)}) exceeds "
                f"{budget_bytes} bytes for {len(frames)} frames"
            ),
            **base,
        )
    u, lossless, streams, params, mode = best
    decoded = decode_frames(streams, codec, params, frames.dtype)
    side = side_bytes(mode, len(frames))
    base["stretch"] = mode
    nbytes = sum(len(b) for b in streams) + side
    if nbytes > budget_bytes:  # cannot happen: only fitting trials are kept
        raise RuntimeError(f"internal error: {nbytes} bytes over a {budget_bytes} budget")
    return BaselineResult(
        decoded=decoded,
        nbytes=nbytes,
        quality=None if lossless else _setting(codec, u),
        bits_per_pixel=8.0 * nbytes / n_pix,
        lossless=lossless,
        side_bytes=side,
        trials=trials,
        frame_bytes=[len(b) for b in streams],
        **base,
    )

"""Standard image codecs as baselines at an equal byte budget.

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
container around them) plus the stretch parameters below (8 bytes per frame,
or 8 bytes for the stack). Frame shape and dtype are not counted.

Bit depth and stretch (``stretch="auto"``):

- uint8 data is encoded as it is by all three codecs (no stretch, 0 extra bytes);
- any other data (uint16, int, float) is first mapped by a per-frame linear
  stretch ``v = round((x - lo) / (hi - lo) * M)`` with ``lo, hi`` the
  frame's min and max stored as two float32 (8 bytes per frame, counted) and
  ``M`` = 255 (JPEG) or 65535 (JPEG 2000, JPEG XL). Perceptual codecs need
  this: their quality settings are relative to the full range of the integer
  type, and EM data often use a small part of it (see
  shared/refs/em-data-and-formats.md, section 3). For integer data spanning
  at most ``M + 1`` values the stretch is exactly invertible; for float data
  and wider integer data the quantization to ``M + 1`` levels is a real loss
  and it shows in the scores. So uint16 data reach JPEG 2000 / JPEG XL
  losslessly as 16-bit, and JPEG (8-bit here) as 8-bit.
- ``stretch="global"`` uses one ``lo, hi`` for the whole stack (8 bytes),
  ``"frame"`` forces the per-frame stretch, ``"none"`` encodes the data as
  they are (allowed only where the codec takes the dtype).
- The lossless modes (JPEG 2000, JPEG XL) always get uint8 / uint16 data
  unstretched (the stretch would only spread the values apart and cost
  bytes); other data are stretched to 16 bits first, so "lossless" then means
  lossless on the 16-bit quantized frames.

Decoding inverts the stretch with the same float32 parameters and returns the
input dtype (rounded and clipped for integer types).

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

__all__ = [
    "CODECS",
    "CODEC_LABELS",
    "BaselineResult",
    "decode_frames",
    "encode_at_budget",
    "encode_frames",
]

#: Codec names accepted by :func:`encode_at_budget`, in display order.
CODECS = ("jpeg", "jpeg2000", "jpegxl")

#: Names for tables and plots.
CODEC_LABELS = {"jpeg": "JPEG", "jpeg2000": "JPEG 2000", "jpegxl": "JPEG XL"}

#: The quality knob's name per codec (``BaselineResult.parameter``).
PARAMETERS = {
    "jpeg": "quality (1-100)",
    "jpeg2000": "PSNR target (dB)",
    "jpegxl": "distance (lower is better)",
}

JPEGXL_EFFORT = 7
_STRETCH_BYTES = 8  # two float32: lo, hi


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
        "none", "frame" or "global" (see the module notes).
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


# --------------------------------------------------------------------------- codecs
def _encoder(codec: str, setting, lossless: bool) -> Callable[[np.ndarray], bytes]:
    import imagecodecs as ic

    if codec == "jpeg":
        q = int(setting)
        return lambda f: ic.jpeg8_encode(f, level=q, optimize=True)
    if codec == "jpeg2000":
        if lossless:
            return lambda f: ic.jpeg2k_encode(
                f, level=0, reversible=True, codecformat="J2K", numthreads=1
            )
        target = float(setting)
        return lambda f: ic.jpeg2k_encode(
            f, level=target, codecformat="J2K", numthreads=1
        )
    if codec == "jpegxl":
        if lossless:
            return lambda f: ic.jpegxl_encode(
                f, lossless=True, effort=JPEGXL_EFFORT, numthreads=1
            )
        d = float(setting)
        return lambda f: ic.jpegxl_encode(f, distance=d, effort=JPEGXL_EFFORT, numthreads=1)
    raise ValueError(f"unknown codec {codec!r}; choose from {', '.join(CODECS)}")


def _decoder(codec: str) -> Callable[[bytes], np.ndarray]:
    import imagecodecs as ic

    if codec == "jpeg":
        return ic.jpeg8_decode
    if codec == "jpeg2000":
        return lambda b: ic.jpeg2k_decode(b, numthreads=1)
    if codec == "jpegxl":
        return lambda b: ic.jpegxl_decode(b, numthreads=1)
    raise ValueError(f"unknown codec {codec!r}; choose from {', '.join(CODECS)}")


# --------------------------------------------------------------------------- stretch
def _codec_dtype(codec: str, dtype: np.dtype) -> np.dtype:
    if codec == "jpeg":
        return np.dtype(np.uint8)
    return np.dtype(np.uint8) if dtype == np.uint8 else np.dtype(np.uint16)


def _takes_as_is(codec: str, dtype: np.dtype) -> bool:
    """True when the codec can encode this dtype without a stretch."""
    return dtype == np.uint8 or (dtype == np.uint16 and codec != "jpeg")


def _stretch_mode(codec: str, dtype: np.dtype, stretch: str) -> str:
    if stretch not in ("auto", "frame", "global", "none"):
        raise ValueError(f"stretch must be auto, frame, global or none, not {stretch!r}")
    native = _takes_as_is(codec, dtype)
    if stretch == "auto":
        return "none" if dtype == np.uint8 else "frame"
    if stretch == "none" and not native:
        raise ValueError(
            f"{CODEC_LABELS[codec]} cannot encode {dtype} data as they are; use a stretch"
        )
    return stretch


def _stretch_params(frames: np.ndarray, mode: str) -> np.ndarray | None:
    """(T, 2) float32 array of (lo, hi) per frame, or None for no stretch."""
    if mode == "none":
        return None
    if mode == "global":
        lo, hi = float(np.min(frames)), float(np.max(frames))
        params = np.tile(np.array([lo, hi], np.float32), (frames.shape[0], 1))
    else:
        flat = frames.reshape(frames.shape[0], -1)
        params = np.stack([flat.min(axis=1), flat.max(axis=1)], axis=1).astype(np.float32)
    if not np.all(np.isfinite(params)):
        raise ValueError("the frames contain NaN or infinite values")
    return params


def _to_codec(frame: np.ndarray, lohi, cdtype: np.dtype) -> np.ndarray:
    if lohi is None:
        return np.ascontiguousarray(frame, dtype=cdtype)
    lo, hi = float(lohi[0]), float(lohi[1])
    top = float(np.iinfo(cdtype).max)
    if hi <= lo:
        return np.zeros(frame.shape, cdtype)
    v = (frame.astype(np.float64) - lo) * (top / (hi - lo))
    return np.clip(np.rint(v), 0, top).astype(cdtype)


def _from_codec(v: np.ndarray, lohi, out_dtype: np.dtype) -> np.ndarray:
    if lohi is None:
        x = v.astype(np.float64)
    else:
        lo, hi = float(lohi[0]), float(lohi[1])
        top = float(np.iinfo(v.dtype).max)
        x = v.astype(np.float64) * ((hi - lo) / top) + lo if hi > lo else np.full(v.shape, lo)
    if np.issubdtype(out_dtype, np.integer):
        info = np.iinfo(out_dtype)
        return np.clip(np.rint(x), info.min, info.max).astype(out_dtype)
    return x.astype(out_dtype)


# --------------------------------------------------------------------------- encode / decode
def encode_frames(
    frames: np.ndarray,
    codec: str,
    setting,
    lossless: bool = False,
    stretch: str = "auto",
    limit: int | None = None,
) -> tuple[list[bytes] | None, np.ndarray | None, str]:
    """Encode all frames with one codec setting.

    Parameters
    ----------
    frames : ndarray (T, H, W)
    codec : str
        One of :data:`CODECS`.
    setting : float
        The quality knob (see the module table); ignored when ``lossless``.
    lossless : bool
        Use the codec's lossless mode (JPEG 2000, JPEG XL); with "auto",
        uint8 / uint16 data are then not stretched.
    stretch : str
        "auto", "frame", "global" or "none" (module notes).
    limit : int, optional
        Stop and return ``None`` codestreams as soon as the total (with
        stretch bytes) exceeds this many bytes.

    Returns
    -------
    (codestreams or None, stretch params (T, 2) float32 or None, stretch mode)
    """
    frames = np.asarray(frames)
    if lossless and stretch == "auto" and _takes_as_is(codec, frames.dtype):
        stretch = "none"
    prepared, params, mode = _prepare(frames, codec, stretch)
    return _encode_prepared(prepared, codec, setting, lossless, mode, limit), params, mode


def _prepare(frames: np.ndarray, codec: str, stretch: str):
    """(frames in the codec's dtype, stretch params or None, stretch mode)."""
    mode = _stretch_mode(codec, frames.dtype, stretch)
    params = _stretch_params(frames, mode)
    cdtype = _codec_dtype(codec, frames.dtype)
    if params is None:
        return np.ascontiguousarray(frames, dtype=cdtype), None, mode
    prepared = np.empty(frames.shape, cdtype)
    for i, f in enumerate(frames):
        prepared[i] = _to_codec(f, params[i], cdtype)
    return prepared, params, mode


def _encode_prepared(prepared, codec, setting, lossless, mode, limit) -> list[bytes] | None:
    enc = _encoder(codec, setting, lossless)
    total = _side_bytes(mode, len(prepared))
    out = []
    for f in prepared:
        b = bytes(enc(f))
        out.append(b)
        total += len(b)
        if limit is not None and total > limit:
            return None
    return out


def decode_frames(
    codestreams: list[bytes], codec: str, params: np.ndarray | None, dtype
) -> np.ndarray:
    """Decode codestreams from :func:`encode_frames` back to a (T, H, W) stack of ``dtype``."""
    dec = _decoder(codec)
    dtype = np.dtype(dtype)
    frames = [
        _from_codec(np.asarray(dec(b)), None if params is None else params[i], dtype)
        for i, b in enumerate(codestreams)
    ]
    return np.stack(frames)


def _side_bytes(mode: str, n_frames: int) -> int:
    if mode == "none":
        return 0
    return _STRETCH_BYTES if mode == "global" else _STRETCH_BYTES * n_frames


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
    prepared, params, _ = _prepare(frames, codec, mode)
    # lossless modes take uint8 / uint16 data as they are: a stretch would only
    # spread the values apart and cost bytes
    native = _takes_as_is(codec, frames.dtype)
    ll_mode = "none" if native else mode
    ll_prepared, ll_params = (frames, None) if native else (prepared, params)

    def snap(u: float) -> float:
        u = min(max(u, lo_u), hi_u)
        return float(round(u)) if integer else u

    def attempt(u: float, lossless: bool = False) -> bool:
        nonlocal trials, best
        trials += 1
        if lossless:
            streams = _encode_prepared(ll_prepared, codec, None, True, ll_mode, budget_bytes)
        else:
            streams = _encode_prepared(
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
    mode = _stretch_mode(codec, frames.dtype, stretch)
    cdtype = _codec_dtype(codec, frames.dtype)
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
            side_bytes=_side_bytes(mode, len(frames)),
            reason=(
                f"even the lowest {CODEC_LABELS[codec]} setting "
                f"({PARAMETERS[codec]} = {_setting(codec, lo_u)}) exceeds "
                f"{budget_bytes} bytes for {len(frames)} frames"
            ),
            **base,
        )
    u, lossless, streams, params, mode = best
    decoded = decode_frames(streams, codec, params, frames.dtype)
    side = _side_bytes(mode, len(frames))
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

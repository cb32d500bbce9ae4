"""Image-quality metrics for reconstructions: PSNR, SSIM and NRMSE.

Conventions (used everywhere in emcs, and stated in every output):

- **Data range.** PSNR and SSIM need the dynamic range ``R`` of the signal.
  :func:`psnr` and :func:`ssim` take it as ``data_range``; when it is not
  given they use ``ref.max() - ref.min()`` of the reference frame they get.
  :func:`score_stack` (and ``emcs compare``) uses ONE range for all frames:
  ``ref.max() - ref.min()`` over the whole reference stack, so that per-frame
  scores are comparable and do not depend on each frame's contrast.
- **PSNR** = ``10 log10(R**2 / MSE)`` in dB, computed in float64; ``inf`` when
  the frames are identical.
- **SSIM** is :func:`skimage.metrics.structural_similarity` with the settings of
  Wang et al. (IEEE TIP 13:600, 2004): Gaussian window sigma = 1.5 (11x11),
  K1 = 0.01, K2 = 0.03, population covariance, mean over the valid (un-padded)
  SSIM map. Frames smaller than 11 pixels on a side fall back to a uniform
  window of the largest odd size <= 7 that fits.
- **NRMSE** = ``sqrt(mean((x - ref)**2)) / sqrt(mean(ref**2))`` (skimage's
  "euclidean" normalization): the error relative to the reference's RMS
  signal. It does not use the data range.
- **Arbitrary intensity units** (SIM reconstructions against an ideal image):
  :func:`affine_fidelity` first maps the image to the reference by a
  least-squares gain and offset and scores the interior only, with the same
  PSNR and SSIM.

This is the one definition of PSNR and SSIM in emcs: ``emcs compare``, the
demo, every benchmark and the tests use it. The capabilities (``emcs.tcs``,
``emcs.dlss``, ``emcs.sim``) do not score images; their training losses are
plain mean squared errors.

Examples
--------
>>> import numpy as np
>>> ref = np.zeros((2, 16, 16)); ref[:, 4:12, 4:12] = 100.0
>>> psnr(ref[0] + 1.0, ref[0])          # MSE = 1, R = 100 -> 40 dB
40.0
>>> s = score_stack(ref + 1.0, ref)
>>> s["data_range"], s["psnr_mean"], s["ssim"][0] < 1.0
(100.0, 40.0, True)
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "DATA_RANGE_NOTE",
    "affine_fidelity",
    "SSIM_SETTINGS",
    "StackScorer",
    "data_range_of",
    "nrmse",
    "psnr",
    "score_stack",
    "ssim",
]

#: Human description of the default data range, repeated in outputs.
DATA_RANGE_NOTE = "max - min of the whole reference stack"

#: The SSIM settings, as passed to :func:`skimage.metrics.structural_similarity`.
SSIM_SETTINGS = {
    "gaussian_weights": True,
    "sigma": 1.5,
    "use_sample_covariance": False,
    "K1": 0.01,
    "K2": 0.03,
}


def _as_pair(x, ref) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x)
    ref = np.asarray(ref)
    if x.shape != ref.shape:
        raise ValueError(f"shape mismatch: {x.shape} vs reference {ref.shape}")
    return x.astype(np.float64, copy=False), ref.astype(np.float64, copy=False)


def data_range_of(ref) -> float:
    """The default data range of a reference: ``max - min`` (as a float).

    Parameters
    ----------
    ref : array_like
        A frame or a whole stack.

    Returns
    -------
    float
    """
    ref = np.asarray(ref)
    return float(ref.max()) - float(ref.min())


def _check_range(data_range: float) -> float:
    data_range = float(data_range)
    if not math.isfinite(data_range) or data_range <= 0:
        raise ValueError(
            f"the data range must be a positive number, got {data_range} "
            "(is the reference constant?)"
        )
    return data_range


def psnr(x, ref, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio of ``x`` against ``ref``, in dB.

    Parameters
    ----------
    x, ref : array_like
        Same shape (a frame or a stack; the MSE is over all pixels).
    data_range : float, optional
        Signal range ``R``; default ``ref.max() - ref.min()``.

    Returns
    -------
    float
        ``10 log10(R**2 / MSE)``; ``inf`` when ``x == ref``.

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.arange(16.0).reshape(4, 4)
    >>> round(psnr(ref + 0.5, ref), 4)   # R = 15, MSE = 0.25
    29.5424
    """
    x, ref = _as_pair(x, ref)
    r = _check_range(data_range_of(ref) if data_range is None else data_range)
    mse = float(np.mean((x - ref) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(r * r / mse)


def _ssim_kwargs(shape: tuple[int, ...]) -> dict:
    side = min(shape[-2:])
    if side >= 11:
        return dict(SSIM_SETTINGS)
    win = min(7, side if side % 2 else side - 1)
    if win < 3:
        raise ValueError(f"frames of shape {shape} are too small for SSIM (need >= 3x3)")
    kw = {k: v for k, v in SSIM_SETTINGS.items() if k not in ("gaussian_weights", "sigma")}
    kw["win_size"] = win
    return kw


def ssim(x, ref, data_range: float | None = None) -> float:
    """Structural similarity of one 2-D frame ``x`` against ``ref``.

    Parameters
    ----------
    x, ref : array_like
        2-D frames of the same shape.
    data_range : float, optional
        Signal range; default ``ref.max() - ref.min()``.

    Returns
    -------
    float
        Mean SSIM (1.0 for identical frames). Settings: :data:`SSIM_SETTINGS`.

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.random.default_rng(0).random((32, 32))
    >>> ssim(ref, ref)
    1.0
    """
    from skimage.metrics import structural_similarity

    x, ref = _as_pair(x, ref)
    if x.ndim != 2:
        raise ValueError(f"ssim works on 2-D frames, got shape {x.shape}")
    r = _check_range(data_range_of(ref) if data_range is None else data_range)
    return float(structural_similarity(x, ref, data_range=r, **_ssim_kwargs(x.shape)))


def nrmse(x, ref) -> float:
    """Root-mean-square error normalized by the RMS of the reference.

    Parameters
    ----------
    x, ref : array_like
        Same shape.

    Returns
    -------
    float
        ``sqrt(mean((x - ref)**2)) / sqrt(mean(ref**2))``; 0.0 when identical,
        ``inf`` when ``ref`` is all zeros and ``x`` is not.

    Examples
    --------
    >>> import numpy as np
    >>> round(nrmse(np.full(4, 1.1), np.ones(4)), 12)
    0.1
    """
    x, ref = _as_pair(x, ref)
    err = math.sqrt(float(np.mean((x - ref) ** 2)))
    norm = math.sqrt(float(np.mean(ref**2)))
    if err == 0.0:
        return 0.0
    if norm == 0.0:
        return math.inf
    return err / norm


def affine_fidelity(image, ref, border: int = 16) -> dict:
    """PSNR and SSIM of an image in arbitrary intensity units, after an affine intensity fit.

    ``a * image + b`` with ``a, b`` minimising the squared error to ``ref`` is
    scored against ``ref`` on the interior (``border`` pixels cut on every
    side), with the data range ``max - min`` of the interior of ``ref`` (1 when
    it is constant).

    Parameters
    ----------
    image, ref : array_like
        2-D frames of the same shape.
    border : int
        Edge pixels excluded on every side.

    Returns
    -------
    dict
        ``{"psnr": dB, "ssim": mean SSIM}``.

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.random.default_rng(3).random((48, 48))
    >>> affine_fidelity(3.0 * ref + 7.0, ref)["ssim"] > 0.999   # gain and offset do not count
    True
    """
    image, ref = _as_pair(image, ref)
    sl = (slice(border, -border or None), slice(border, -border or None))
    im, rf = image[sl], ref[sl]
    x = im.ravel()
    (a, b), *_ = np.linalg.lstsq(np.column_stack([x, np.ones_like(x)]), rf.ravel(), rcond=None)
    fit = a * im + b
    r = data_range_of(rf) or 1.0
    return {"psnr": psnr(fit, rf, r), "ssim": ssim(fit, rf, r)}


def _mean(values: list[float]) -> float:
    if not values:
        return math.nan
    if any(math.isinf(v) for v in values):
        return math.inf if all(v > 0 for v in values if math.isinf(v)) else math.nan
    return float(np.mean(values))


class StackScorer:
    """Accumulate per-frame scores chunk by chunk (memory bounded).

    Parameters
    ----------
    data_range : float
        One range for all frames (see the module notes).

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.random.default_rng(1).random((4, 16, 16))
    >>> sc = StackScorer(data_range_of(ref))
    >>> sc.add(ref[:2] + 0.01, ref[:2]); sc.add(ref[2:] + 0.01, ref[2:])
    >>> round(sc.result()["psnr_mean"], 6) == round(psnr(ref + 0.01, ref), 6)
    True
    """

    def __init__(self, data_range: float):
        self.data_range = _check_range(data_range)
        self._psnr: list[float] = []
        self._ssim: list[float] = []
        self._nrmse: list[float] = []
        self._sq_err = 0.0
        self._sq_ref = 0.0
        self._n = 0

    def add(self, recon, ref) -> None:
        """Score frames ``recon`` (n, H, W) against ``ref`` (n, H, W)."""
        recon, ref = _as_pair(recon, ref)
        if recon.ndim == 2:
            recon, ref = recon[None], ref[None]
        if recon.ndim != 3:
            raise ValueError(f"expected (T, H, W) frames, got shape {recon.shape}")
        for a, b in zip(recon, ref, strict=True):
            self._psnr.append(psnr(a, b, self.data_range))
            self._ssim.append(ssim(a, b, self.data_range))
            self._nrmse.append(nrmse(a, b))
            self._sq_err += float(np.sum((a - b) ** 2))
            self._sq_ref += float(np.sum(b**2))
            self._n += a.size

    def result(self) -> dict:
        """Per-frame lists, their means and whole-stack PSNR/NRMSE."""
        mse = self._sq_err / self._n if self._n else math.nan
        if self._n and mse == 0.0:
            psnr_all, nrmse_all = math.inf, 0.0
        elif self._n:
            psnr_all = 10.0 * math.log10(self.data_range**2 / mse)
            nrmse_all = math.sqrt(self._sq_err / self._sq_ref) if self._sq_ref else math.inf
        else:
            psnr_all = nrmse_all = math.nan
        return {
            "frames": len(self._psnr),
            "data_range": self.data_range,
            "psnr": list(self._psnr),
            "ssim": list(self._ssim),
            "nrmse": list(self._nrmse),
            "psnr_mean": _mean(self._psnr),
            "ssim_mean": _mean(self._ssim),
            "nrmse_mean": _mean(self._nrmse),
            "psnr_stack": psnr_all,
            "nrmse_stack": nrmse_all,
        }


def score_stack(recon, ref, data_range: float | None = None) -> dict:
    """Score a reconstructed stack against a reference, frame by frame.

    Parameters
    ----------
    recon, ref : array_like
        (T, H, W) stacks (a 2-D frame is taken as T = 1), matched by index.
    data_range : float, optional
        Default: ``ref.max() - ref.min()`` over the WHOLE reference stack, used
        for every frame.

    Returns
    -------
    dict
        ``frames``, ``data_range``; per-frame lists ``psnr``, ``ssim``,
        ``nrmse``; their means ``psnr_mean``, ``ssim_mean``, ``nrmse_mean``
        (``psnr_mean`` is ``inf`` if any frame is identical); and
        ``psnr_stack`` / ``nrmse_stack`` from the MSE over all pixels.

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.random.default_rng(2).random((3, 16, 16))
    >>> s = score_stack(ref, ref)
    >>> s["psnr"], s["ssim_mean"], s["nrmse_mean"]
    ([inf, inf, inf], 1.0, 0.0)
    """
    recon = np.asarray(recon)
    ref = np.asarray(ref)
    if recon.shape != ref.shape:
        raise ValueError(f"shape mismatch: {recon.shape} vs reference {ref.shape}")
    scorer = StackScorer(data_range_of(ref) if data_range is None else data_range)
    scorer.add(recon, ref)
    return scorer.result()

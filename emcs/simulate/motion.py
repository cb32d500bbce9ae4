"""Smooth motion between frames: drift, rotation, zoom and slow elastic deformation.

A movie is made from one large *scene* image by resampling it frame after
frame with a slowly changing geometric transform. Everything here is
deterministic for a given :class:`numpy.random.Generator`.

Examples
--------
>>> import numpy as np
>>> from emcs.simulate.motion import random_motion, warp_movie
>>> rng = np.random.default_rng(0)
>>> scene = rng.random((80, 80)).astype(np.float32)
>>> m = random_motion(rng, frames=5, size=(48, 48), scene_shape=scene.shape, speed=0.5)
>>> warp_movie(scene, m).shape
(5, 48, 48)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from emcs.simulate.render import smooth_field

__all__ = [
    "Motion",
    "random_motion",
    "smooth_path",
    "warp_movie",
    "warp_frame",
]


@dataclass
class Motion:
    """Per-frame geometry that maps output pixels into a scene.

    Attributes
    ----------
    size : (int, int)
        Output frame (H, W).
    center : (float, float)
        Scene point (row, col) seen at the frame centre at time 0.
    shifts : ndarray (T, 2)
        Drift of the view in scene pixels (row, col).
    angles : ndarray (T,)
        In-plane rotation in radians.
    scales : ndarray (T,)
        Magnification (1 = one scene pixel per output pixel; > 1 zooms in).
    fields : ndarray (K, 2, H, W) or None
        Elastic displacement basis fields (scene pixels) ...
    weights : ndarray (T, K) or None
        ... mixed per frame as ``sum_k weights[t, k] * fields[k]``.
    """

    size: tuple[int, int]
    center: tuple[float, float]
    shifts: np.ndarray
    angles: np.ndarray
    scales: np.ndarray
    fields: np.ndarray | None = None
    weights: np.ndarray | None = None

    @property
    def frames(self) -> int:
        return int(self.shifts.shape[0])

    def frame_displacement(self, t: int) -> np.ndarray | None:
        if self.fields is None:
            return None
        return np.tensordot(self.weights[t], self.fields, axes=(0, 0))


def smooth_path(rng: np.random.Generator, frames: int, step: float, dims: int = 1) -> np.ndarray:
    """A smooth random path of ``frames`` points whose frame-to-frame step is about ``step``.

    A constant velocity plus a gently curving part (low-pass filtered random
    accelerations); starts at 0. Returns shape (frames, dims).
    """
    t = np.arange(frames, dtype=np.float64)
    direction = rng.normal(size=dims)
    direction /= np.linalg.norm(direction) + 1e-12
    velocity = direction * step * rng.uniform(0.5, 1.0)
    wobble = np.zeros((frames, dims))
    if frames > 2:
        acc = rng.normal(size=(frames, dims))
        acc = ndimage.gaussian_filter1d(acc, sigma=max(2.0, frames / 6), axis=0, mode="nearest")
        vel = np.cumsum(acc, axis=0)
        vel -= vel.mean(axis=0)
        scale = np.abs(vel).max() + 1e-12
        wobble = np.cumsum(vel / scale * step * 0.5, axis=0)
    path = t[:, None] * velocity + wobble
    return (path - path[0]).astype(np.float64)


def random_motion(
    rng: np.random.Generator,
    frames: int,
    size: tuple[int, int],
    scene_shape: tuple[int, int],
    speed: float = 0.4,
    rotation: float = 0.002,
    zoom: float = 0.0,
    deform: float = 0.0,
    deform_scale: float = 0.25,
    scale: float = 1.0,
) -> Motion:
    """Draw a smooth motion that keeps the view inside the scene.

    Parameters
    ----------
    frames, size, scene_shape
        Number of frames, output (H, W), scene (H, W).
    speed : float
        Typical drift per frame, in output pixels.
    rotation : float
        Typical rotation per frame, in radians.
    zoom : float
        Typical relative magnification change per frame.
    deform : float
        Peak elastic displacement reached over the movie, in scene pixels
        (slowly growing and bending, like a specimen under load).
    deform_scale : float
        Size of the deformation features relative to the frame.
    scale : float
        Base magnification (output pixels per scene pixel).
    """
    h, w = size
    shifts = smooth_path(rng, frames, speed / scale, 2)
    angles = smooth_path(rng, frames, rotation, 1)[:, 0]
    scales = scale * np.exp(smooth_path(rng, frames, zoom, 1)[:, 0]) if zoom > 0 else np.full(frames, scale)
    # keep the view centred in the scene over the whole path
    center = (scene_shape[0] / 2 - shifts[:, 0].mean(), scene_shape[1] / 2 - shifts[:, 1].mean())
    fields = weights = None
    if deform > 0:
        k = 2
        sig = max(h, w) * deform_scale
        fields = np.stack(
            [np.stack([smooth_field(rng, (h, w), sig) for _ in range(2)]) for _ in range(k)]
        )
        tt = np.linspace(0.0, 1.0, frames)
        phase = rng.uniform(0, 2 * np.pi)
        ramp = deform * (0.3 + 0.7 * tt)
        weights = np.stack([ramp * np.cos(phase + 1.5 * tt), ramp * np.sin(phase + 1.5 * tt)], axis=1)
    return Motion(
        size=(h, w),
        center=center,
        shifts=shifts,
        angles=angles.astype(np.float64),
        scales=np.asarray(scales, dtype=np.float64),
        fields=fields,
        weights=weights,
    )


def _coords(motion: Motion, t: int) -> np.ndarray:
    h, w = motion.size
    yy, xx = np.meshgrid(
        np.arange(h, dtype=np.float32) - (h - 1) / 2,
        np.arange(w, dtype=np.float32) - (w - 1) / 2,
        indexing="ij",
    )
    c, s = np.cos(motion.angles[t]), np.sin(motion.angles[t])
    inv = 1.0 / motion.scales[t]
    ys = (c * yy - s * xx) * inv + motion.center[0] + motion.shifts[t, 0]
    xs = (s * yy + c * xx) * inv + motion.center[1] + motion.shifts[t, 1]
    disp = motion.frame_displacement(t)
    if disp is not None:
        ys = ys + disp[0]
        xs = xs + disp[1]
    return np.stack([ys, xs]).astype(np.float32)


def warp_frame(scene: np.ndarray, motion: Motion, t: int, order: int = 1, mode: str = "reflect") -> np.ndarray:
    """Frame ``t`` of ``motion`` resampled from ``scene`` (real or complex)."""
    coords = _coords(motion, t)
    if np.iscomplexobj(scene):
        re = ndimage.map_coordinates(scene.real, coords, order=order, mode=mode)
        im = ndimage.map_coordinates(scene.imag, coords, order=order, mode=mode)
        return (re + 1j * im).astype(np.complex64)
    return ndimage.map_coordinates(scene, coords, order=order, mode=mode).astype(np.float32)


def warp_movie(scene: np.ndarray, motion: Motion, order: int = 1, mode: str = "reflect") -> np.ndarray:
    """All frames of ``motion`` resampled from ``scene``: (T, H, W)."""
    dtype = np.complex64 if np.iscomplexobj(scene) else np.float32
    out = np.empty((motion.frames,) + tuple(motion.size), dtype)
    for t in range(motion.frames):
        out[t] = warp_frame(scene, motion, t, order=order, mode=mode)
    return out

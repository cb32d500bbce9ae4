"""bfloat16 inference of tcs-unfold's denoisers on the CPU (oneDNN; fast where bfloat16 is native).

:func:`to_bfloat16` returns a copy of a trained :class:`~emcs.tcs.nets.unfold.UnfoldNet`
whose denoisers, all but the last, run in bfloat16: their input (the frames, masks
and normalised measurement) is rounded to bfloat16, every convolution and activation
is bfloat16, and each stage's residual is added to the float32 frames. The
data-consistency steps, the frames themselves, the measurement and the last stage
stay float32, so rounding errors do not accumulate across stages nor reach the
output unfiltered.

On CPUs with native bfloat16 (AMX or AVX512-BF16) oneDNN's bfloat16 convolutions
are several times faster than float32 (a 32 -> 32 3x3 convolution with its leaky ReLU on a
10 x 181^2 tile: 13.5 against 58 ms on one AMX core), and what remains are passes over memory. The
copy therefore also (same arithmetic as :class:`~emcs.tcs.nets.unfold.Denoiser`, up to
rounding):

- runs the head and body convolutions with their leaky ReLU as one oneDNN call
  (:func:`emcs.tcs.nets.int8.conv_leaky`), with no second pass over the output;
- takes the frame mean of the temporal mix as one matrix product: PyTorch 2.13 reduces
  a bfloat16 tensor by first converting all of it (17 ms against 2 ms on a 338^2 tile).

Measured on a 2-core Xeon with AMX (benchmarks/tcs_speed.md): 0.138 s per stage of a 362^2,
B = 10 tile on one thread, against 0.147 s with int8 and 0.205 s with float32; more than half of
a bfloat16 stage is elementwise passes that PyTorch cannot fuse here. On a CPU without native
bfloat16 oneDNN emulates it and int8 is faster (:func:`native`).

Checked where it runs: the first time a denoiser input shape is met in a process, the
bfloat16 residual is compared with the float32 denoiser's on the same input; a shape
off by more than :data:`BF16_TOLERANCE` of the residual's range runs in float32 from then
on (:func:`fallbacks`), as the int8 convolutions do (:mod:`emcs.tcs.nets.int8`).

Opt-in (``EMCS_FUSE=1``): from the :data:`FUSE_AFTER`-th call of an input shape on, each
denoiser runs as oneDNN Graph fused graphs (:mod:`emcs.tcs.nets.fused`), checked once against
this eager path; ~0.8x the wall time of a 4096^2 decode, but ~0.3-0.7 GiB more peak memory
(benchmarks/tcs_speed.md), which is why it is not the default.
"""

from __future__ import annotations

import copy
import functools
import threading

import torch
from torch.nn import functional as F

from emcs.tcs.nets import fused
from emcs.tcs.nets.int8 import FastDenoiser, conv_leaky
from emcs.tcs.nets.unfold import LEAKY_SLOPE, Denoiser, TemporalMix, UnfoldNet, _channels_last

#: largest max |bfloat16 - float32| / max |float32| of a stage's residual taken as right;
#: healthy bfloat16 residuals measure 0.005-0.02 (8-bit mantissas in every layer)
BF16_TOLERANCE = 0.1
#: denoiser input shape -> whether the bfloat16 residual was right there
_CHECKED: dict[tuple, bool] = {}
#: calls of a denoiser with one input shape after which that shape runs as fused graphs
#: (:mod:`emcs.tcs.nets.fused`; tracing them costs about five eager calls of a 362^2 tile)
FUSE_AFTER = 2
_BUILD = threading.Lock()
#: (input shape, n) whose fused graphs were asked for (``EMCS_FUSE=1``) but not built, or wrong
_UNFUSED: list[tuple] = []


def fallbacks() -> list[tuple]:
    """The denoiser input shapes whose bfloat16 residual was found wrong in this process
    (they run in float32)."""
    return [key for key, ok in _CHECKED.items() if not ok]


def unfused() -> list[tuple]:
    """The ``(input shape, n)`` of this process whose fused graphs were asked for
    (``EMCS_FUSE=1``) but unavailable or wrong: those ran on the eager bfloat16 path."""
    return list(_UNFUSED)


def native() -> bool:
    """Whether this CPU computes bfloat16 natively (AMX tiles or AVX512-BF16), where
    :func:`to_bfloat16` is the fastest CPU arithmetic; elsewhere oneDNN emulates it."""
    cpu = getattr(torch, "cpu", None)
    probes = [getattr(cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    try:
        return any(p is not None and bool(p()) for p in probes)
    except RuntimeError:
        return False


@functools.cache
def available() -> bool:
    """Whether this PyTorch runs :func:`to_bfloat16`'s copy, and right: oneDNN with bfloat16,
    and a small denoiser whose bfloat16 residual matches its float32 one (once per process)."""
    try:
        if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
            return False
        gen = torch.Generator().manual_seed(0)
        den = Denoiser(8, 3)
        with torch.no_grad():
            for p in den.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
            z = torch.rand(4, 12, 12, 3, generator=gen).permute(0, 3, 1, 2)
            want = den(z, 2)
            got = BF16Denoiser.from_denoiser(den)._bf16(z, 2)
        return got.shape == want.shape and _close(got, want)
    except (AttributeError, RuntimeError, TypeError, ValueError):
        return False


def _close(got: torch.Tensor, want: torch.Tensor) -> bool:
    span = float(want.abs().max())
    return bool(torch.isfinite(got).all()) and float((got - want).abs().max()) <= BF16_TOLERANCE * span


def _mix(mix: TemporalMix, h: torch.Tensor, n: int) -> torch.Tensor:
    """:meth:`TemporalMix.forward` in bfloat16, with the frame mean as a matrix product."""
    nb, c, hh, ww = h.shape
    b = nb // n
    hm = _channels_last(h).permute(0, 2, 3, 1).reshape(n, b, hh * ww, c)  # memory order
    t = F.conv2d(hm.permute(0, 3, 1, 2), mix.weight3, mix.tconv.bias, padding=(1, 0))
    t = _channels_last(t).permute(0, 2, 3, 1)  # (n, b, h*w, c)
    mean = torch.matmul(torch.full((n, 1, b), 1.0 / b, dtype=h.dtype), hm.reshape(n, b, -1))
    m = F.linear(mean.view(n, hh * ww, c), mix.ctx.weight[:, :, 0, 0], mix.ctx.bias)
    t.add_(m[:, None])
    F.leaky_relu_(t, LEAKY_SLOPE)
    return t.add_(hm).reshape(nb, hh, ww, c).permute(0, 3, 1, 2)


class BF16Denoiser(FastDenoiser):
    """Inference copy of a :class:`~emcs.tcs.nets.unfold.Denoiser` in bfloat16 (the fused head
    of :class:`~emcs.tcs.nets.int8.FastDenoiser`, in bfloat16).

    Input float32 (n*B, 3, H, W), output the float32 residual (n*B, 4, H/2, W/2), as
    the original; :attr:`reference` keeps the float32 original for the check and the
    fallback.
    """

    @classmethod
    def from_denoiser(cls, den: Denoiser) -> BF16Denoiser:
        fast = super().from_denoiser(den).to(torch.bfloat16)
        fast.head_weight = fast.head_weight.contiguous(memory_format=torch.channels_last)
        for mix in fast.mix:
            mix.register_buffer("weight3", mix.tconv.weight.detach()[..., 0].contiguous(), persistent=False)
        fast.reference = copy.deepcopy(den).eval()
        fast._calls, fast._fused = {}, {}
        return fast

    def forward(self, z: torch.Tensor, n: int) -> torch.Tensor:
        key = tuple(z.shape)
        ok = _CHECKED.get(key)
        if ok is False:
            return self.reference(z, n)
        graphs = self._fused.get((key, n))
        if graphs is not None:
            return graphs(z)
        got = self._bf16(z, n)
        if ok is None:
            want = self.reference(z, n)
            right = _close(got, want)
            if float(want.abs().max()) > 0:  # a zero residual proves nothing
                _CHECKED[key] = right
            if not right:
                return want
        self._calls[key, n] = calls = self._calls.get((key, n), 0) + 1
        if calls == FUSE_AFTER and _CHECKED.get(key):
            self._fuse((key, n), z, n, got)
        return got

    def _fuse(self, key: tuple, z: torch.Tensor, n: int, eager: torch.Tensor) -> None:
        """Build and check this shape's fused graphs (:mod:`emcs.tcs.nets.fused`). They are
        checked against ``eager``, this input's eager bfloat16 residual (itself checked against
        float32 on the shape's first call); a shape whose graphs are unavailable or off by more
        than :data:`BF16_TOLERANCE` stays eager."""
        with _BUILD:
            if key in self._fused:
                return
            graphs = fused.build(self, z, n)
            if graphs is not None and not _close(graphs(z), eager):
                graphs = None
            if graphs is None and fused.enabled():
                _UNFUSED.append(key)
            self._fused[key] = graphs

    def _bf16(self, z: torch.Tensor, n: int) -> torch.Tensor:
        h = _mix(self.mix[0], self.features(z.to(torch.bfloat16)), n)
        for i, conv in enumerate(self.body):
            h.add_(conv_leaky(h, conv.weight, conv.bias, stride=1, padding=1))
            if i == len(self.body) - 1:
                h = _mix(self.mix[1], h, n)
        return self.tail(h).float()


def to_bfloat16(net: UnfoldNet) -> UnfoldNet:
    """A copy of ``net`` (inference only) whose denoisers run in bfloat16 (:class:`BF16Denoiser`),
    all but the last, which stays float32 (with the fused head of
    :class:`emcs.tcs.nets.int8.FastDenoiser`).

    The last stage's rounding reaches the output unfiltered: in bfloat16 too it cost 0.026 dB
    on a smooth held-out movie at 41.6 dB (the gate is 0.02 dB; benchmarks/tcs_speed.md), as
    int8 did, while the earlier stages' rounding is absorbed by the stages after them.
    """
    fast = copy.deepcopy(net).eval()
    last = len(fast.denoisers) - 1
    for k, den in enumerate(fast.denoisers):
        fast.denoisers[k] = (BF16Denoiser if k < last else FastDenoiser).from_denoiser(den)
    return fast


__all__ = ["BF16_TOLERANCE", "BF16Denoiser", "FUSE_AFTER", "available", "fallbacks", "native", "to_bfloat16",
           "unfused"]

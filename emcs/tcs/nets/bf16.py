"""bfloat16 inference of tcs-unfold's denoisers on the CPU (oneDNN; fast where bfloat16 is native).

:func:`to_bfloat16` returns a copy of a trained :class:`~emcs.tcs.nets.unfold.UnfoldNet`
whose denoisers, all but the last, run in bfloat16: their input (the frames, masks
and normalised measurement) is rounded to bfloat16, every convolution and activation
is bfloat16, and each stage's residual is added to the float32 frames. The
data-consistency steps, the frames themselves and the measurement stay float32, and so do
the last stage's head, tail and residual stream (:class:`MixedDenoiser`: only its body and
temporal convolutions are bfloat16), so rounding errors do not accumulate across stages nor
reach the output unfiltered.

On CPUs with native bfloat16 (AMX or AVX512-BF16) oneDNN's bfloat16 convolutions
are several times faster than float32 (a 32 -> 32 3x3 convolution with its leaky ReLU on a
10 x 181^2 tile: 8.6 against 56 ms on one AMX core), while PyTorch 2.13's eager bfloat16
elementwise kernels are slower per element than its float32 ones (an in-place add of two
10 x 32 x 181^2 tensors: 13.6 ms). So the copy runs every step of a stage as a oneDNN call
with post-ops (same arithmetic as :class:`~emcs.tcs.nets.unfold.Denoiser`, up to rounding):

- the head and body convolutions with their leaky ReLU (:func:`emcs.tcs.nets.int8.conv_leaky`);
- each residual add as a 1x1 identity convolution with a sum post-op (:func:`_add_into`,
  bitwise the eager add, 3 ms);
- the temporal mix as three calls (:func:`_mix`).

Measured on a 2-core Xeon with AMX (benchmarks/tcs_speed.md): one stage of a 362^2, B = 10
tile takes 60-70 ms on one thread, against 140-155 ms with eager bfloat16 adds and ~220 ms in
float32.

Checked where it runs: the first time a denoiser input shape is met in a process, the
bfloat16 residual is compared with the float32 denoiser's on the same input; a shape
off by more than :data:`BF16_TOLERANCE` of the residual's range runs in float32 from then
on (:func:`fallbacks`), as the int8 convolutions do (:mod:`emcs.tcs.nets.int8`).
"""

from __future__ import annotations

import copy
import functools

import torch

from emcs.tcs.nets.int8 import FastDenoiser, conv_leaky
from emcs.tcs.nets.unfold import Denoiser, TemporalMix, UnfoldNet, _channels_last

#: largest max |bfloat16 - float32| / max |float32| of a stage's residual taken as right;
#: healthy bfloat16 residuals measure 0.005-0.02 (8-bit mantissas in every layer)
BF16_TOLERANCE = 0.1
#: denoiser input shape -> whether the bfloat16 residual was right there
_CHECKED: dict[tuple, bool] = {}


def fallbacks() -> list[tuple]:
    """The denoiser input shapes whose bfloat16 residual was found wrong in this process
    (they run in float32); ``"last"`` follows the shape for the last stage (:class:`MixedDenoiser`)."""
    return [key for key, ok in _CHECKED.items() if not ok]


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


def _conv_into(acc: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
               padding: tuple[int, int]) -> torch.Tensor:
    """``acc += conv2d(x, weight, bias, padding=padding)`` as one oneDNN convolution with a sum
    post-op (bfloat16, channels-last ``acc`` and ``x``; the sum is taken in float32 and rounded once)."""
    return torch.ops.mkldnn._convolution_pointwise_.binary(
        acc, x, weight, bias, list(padding), [1, 1], [1, 1], 1, "add", None, None, [], None)


def _add_into(acc: torch.Tensor, x: torch.Tensor, eye: torch.Tensor) -> torch.Tensor:
    """``acc += x`` (bfloat16, channels-last, 4-D) as a 1x1 convolution with the identity
    ``eye`` and a sum post-op: bitwise the eager ``add_`` (each output is one input times 1.0,
    summed in float32 and rounded once), in a quarter of its time on a 2-core Xeon, where
    PyTorch 2.13's eager bfloat16 ``add_`` takes twice float32's time."""
    return _conv_into(acc, x, eye, None, (0, 0))


def _mix_branch(view: torch.Tensor, n: int, weight3: torch.Tensor, bias3: torch.Tensor,
                w_ctx: torch.Tensor, b_ctx: torch.Tensor, eye: torch.Tensor) -> torch.Tensor:
    """``leaky(tconv(view) + ctx(mean over frames))`` of a temporal mix, for the (n, C, B, H*W)
    channels-last bfloat16 ``view`` of its input, in oneDNN calls:

    - the context ``ctx(mean over frames)`` as one (B, 1) convolution whose taps are the 1x1
      context weight ``w_ctx`` / B (the mean and the 1x1 convolution in one);
    - that context copied over the frames, the temporal convolution summed into it;
    - the leaky ReLU as a 1x1 identity convolution with an eltwise post-op.
    Each sum is taken in float32 and rounded once (the float32 module rounds nothing; PyTorch's
    eager bfloat16 operations would round after each step).
    """
    _, c, b, hw = view.shape
    ctx = torch.ops.mkldnn._convolution_pointwise(view, (w_ctx / b).expand(c, c, b, 1).contiguous(), b_ctx,
                                                  [0, 0], [1, 1], [1, 1], 1, "none", [], "")  # (n, c, 1, hw)
    t = ctx.permute(0, 2, 3, 1).expand(n, b, hw, c).contiguous().permute(0, 3, 1, 2)
    _conv_into(t, view, weight3, bias3, (1, 0))
    return conv_leaky(t, eye, None, stride=1, padding=0)


def _frames_view(h: torch.Tensor, n: int) -> torch.Tensor:
    """The (n, C, B, H*W) channels-last view of channels-last features (n*B, C, H, W), no copy."""
    nb, c, hh, ww = h.shape
    return _channels_last(h).permute(0, 2, 3, 1).reshape(n, nb // n, hh * ww, c).permute(0, 3, 1, 2)


def _features(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The inverse of :func:`_frames_view`: (n, C, B, H*W) back to (n*B, C, H, W), no copy."""
    nb, c, hh, ww = shape
    return t.permute(0, 2, 3, 1).reshape(nb, hh, ww, c).permute(0, 3, 1, 2)


def _mix(mix: TemporalMix, h: torch.Tensor, n: int, eye: torch.Tensor) -> torch.Tensor:
    """:meth:`TemporalMix.forward` in bfloat16: :func:`_mix_branch`, then the residual added
    (:func:`_add_into`)."""
    view = _frames_view(h, n)
    u = _mix_branch(view, n, mix.weight3, mix.tconv.bias, mix.ctx.weight, mix.ctx.bias, eye)
    return _features(_add_into(u, view, eye), h.shape)


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
        width = fast.head.out_channels
        fast.register_buffer("eye", torch.eye(width, dtype=torch.bfloat16).view(width, width, 1, 1),
                             persistent=False)
        fast.reference = copy.deepcopy(den).eval()
        return fast

    #: what the per-shape check is keyed on besides the input shape ("" for the first stages)
    check_tag = ""

    def forward(self, z: torch.Tensor, n: int) -> torch.Tensor:
        key = tuple(z.shape) + ((self.check_tag,) if self.check_tag else ())
        ok = _CHECKED.get(key)
        if ok is False:
            return self.reference(z, n)
        got = self._bf16(z, n)
        if ok is None:
            want = self.reference(z, n)
            right = _close(got, want)
            if float(want.abs().max()) > 0:  # a zero residual proves nothing
                _CHECKED[key] = right
            if not right:
                return want
        return got

    def _bf16(self, z: torch.Tensor, n: int) -> torch.Tensor:
        h = _mix(self.mix[0], self.features(z.to(torch.bfloat16)), n, self.eye)
        for i, conv in enumerate(self.body):
            _add_into(h, conv_leaky(h, conv.weight, conv.bias, stride=1, padding=1), self.eye)
            if i == len(self.body) - 1:
                h = _mix(self.mix[1], h, n, self.eye)
        return self.tail(h).float()


class MixedDenoiser(BF16Denoiser):
    """The last stage's inference copy: float32 head, tail and residual stream; bfloat16 body,
    temporal and context convolutions.

    Each bfloat16 convolution reads the float32 stream rounded to bfloat16 and its output (with
    its leaky ReLU) is rounded once and added to the float32 stream, so the stream, which the
    float32 tail turns into the output, never holds bfloat16 values. Checked per input shape
    against the float32 original like :class:`BF16Denoiser`. 0.0013 of the residual's range from
    float32, in 0.75x the time of the float32 stage (a 362^2, B = 10 tile on one AMX core; a
    stage all in bfloat16 was 0.0054 and failed the 0.02 dB gate, benchmarks/tcs_speed.md).
    """

    check_tag = "last"

    @classmethod
    def from_denoiser(cls, den: Denoiser) -> MixedDenoiser:
        fast = super(BF16Denoiser, cls).from_denoiser(den)  # the float32 copy, fused head
        bf = torch.bfloat16
        fast.bf_body = [(c.weight.detach().to(bf), c.bias.detach().to(bf)) for c in fast.body]
        fast.bf_mix = [(m.tconv.weight.detach()[..., 0].to(bf).contiguous(), m.tconv.bias.detach().to(bf),
                        m.ctx.weight.detach().to(bf), m.ctx.bias.detach().to(bf)) for m in fast.mix]
        width = fast.head.out_channels
        fast.eye = torch.eye(width, dtype=bf).view(width, width, 1, 1)
        fast.reference = copy.deepcopy(den).eval()
        return fast

    def _mix_into(self, k: int, h: torch.Tensor, n: int) -> torch.Tensor:
        """``h += leaky(tconv(h) + ctx(mean h))`` (:func:`_mix_branch` of ``h`` rounded to bfloat16)."""
        u = _mix_branch(_frames_view(h.to(torch.bfloat16), n), n, *self.bf_mix[k], self.eye)
        return h.add_(_features(u, h.shape))

    def _bf16(self, z: torch.Tensor, n: int) -> torch.Tensor:
        h = self._mix_into(0, self.features(z), n)  # float32 head
        for i, (w, b) in enumerate(self.bf_body):
            h.add_(conv_leaky(h.to(torch.bfloat16), w, b, stride=1, padding=1))
            if i == len(self.bf_body) - 1:
                h = self._mix_into(1, h, n)
        return self.tail(h)  # float32 tail


def to_bfloat16(net: UnfoldNet) -> UnfoldNet:
    """A copy of ``net`` (inference only) whose denoisers run in bfloat16 (:class:`BF16Denoiser`),
    all but the last, whose residual stream, head and tail stay float32 (:class:`MixedDenoiser`).

    The last stage's rounding reaches the output unfiltered: all in bfloat16 it cost 0.023-0.026 dB
    on a smooth held-out movie at 41.6 dB (the gate is 0.02 dB; benchmarks/tcs_speed.md), as int8
    did, while the earlier stages' rounding is absorbed by the stages after them.
    """
    fast = copy.deepcopy(net).eval()
    last = len(fast.denoisers) - 1
    for k, den in enumerate(fast.denoisers):
        fast.denoisers[k] = (BF16Denoiser if k < last else MixedDenoiser).from_denoiser(den)
    return fast


__all__ = ["BF16_TOLERANCE", "BF16Denoiser", "MixedDenoiser", "available", "fallbacks", "native", "to_bfloat16"]

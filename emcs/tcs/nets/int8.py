"""Int8 (oneDNN, AVX512-VNNI) inference of tcs-unfold's 32-channel convolutions on the CPU.

:func:`quantize_unfold` returns a copy of a trained :class:`~emcs.tcs.nets.unfold.UnfoldNet`
whose body, temporal and tail convolutions run as int8 x int8 -> int32 convolutions
(``torch.ops.onednn.qconv2d_pointwise``, float32 output) in every stage but the
last: weights quantised per output channel (symmetric, at load), activations per
tensor (asymmetric uint8, range measured on every call, so no calibration data
is needed); the tails' output feeds the reconstruction, so their weight rounding error
is removed from their mean (``Int8Conv2d(correct_mean=True)``). The head (3 input
channels), the last stage, the frame-mean context
and every data-consistency step stay float32; every stage's head convolution and
its leaky ReLU run as one oneDNN call (:class:`FastDenoiser`, same arithmetic).

Post-training dynamic quantisation as in Jacob et al., CVPR 2018 (integer
arithmetic with per-tensor affine activations and per-channel weights).

The int8 kernels are checked where they run: the first time a convolution geometry
(weight shape, padding, input shape) is met in a process, the int8 result is compared
with the float32 convolution of the same input, and a geometry whose int8 result is off by
more than :data:`INT8_TOLERANCE` runs in float32 from then on (:func:`fallbacks` lists them).
On a Xeon with AMX (oneDNN in PyTorch 2.13) the (3, 1) temporal convolution came out wrong
at the decoder's shapes (errors of 0.2-0.6 of the largest output value, at the first and last
frame and, on larger inputs, everywhere), while the 12 x 12 probe of :func:`available` passed:
before this check the default CPU decode of held-out B = 8 movies lost up to 8.5 dB
(benchmarks/tcs_speed.md).
"""

from __future__ import annotations

import copy
import functools
import warnings

import torch
from torch import nn

from emcs.tcs.nets.unfold import LEAKY_SLOPE, Denoiser, UnfoldNet, _channels_last, _head_weight

#: largest max |int8 - float32| / max |float32| of a convolution taken as right; healthy int8
#: convolutions measure 0.006-0.01 (8-bit weights and activations), the wrong ones 0.2-0.6
INT8_TOLERANCE = 0.05
#: (weight shape, padding, input shape) -> whether the int8 convolution was right there
_CHECKED: dict[tuple, bool] = {}


def fallbacks() -> list[tuple]:
    """The convolution geometries (weight shape, padding, input shape) whose int8 result was
    found wrong in this process; they run in float32."""
    return [key for key, ok in _CHECKED.items() if not ok]


@functools.cache
def available() -> bool:
    """Whether this PyTorch runs the oneDNN ops of :func:`quantize_unfold`, and right.

    The ops are internal to PyTorch (``torch.ops.onednn``, ``torch.ops.mkldnn``), so their
    presence is not enough: small versions of what the inference copy runs (an int8
    32-channel-like convolution, an int8 tail with its mean correction, the fused stride-2
    head) are run once per process and compared with float32; any error, or a result off
    by more than its quantisation step (int8) or by more than float rounding (fused), means
    no (the decoder then stays in float32).
    """
    try:
        ops = torch.ops.onednn
        if not (torch.backends.mkldnn.is_available() and hasattr(torch, "quantize_per_tensor")
                and hasattr(ops, "qconv2d_pointwise") and hasattr(ops, "qconv_prepack")
                and hasattr(torch.ops.mkldnn, "_convolution_pointwise")):
            return False
        gen = torch.Generator().manual_seed(0)
        body, tail = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1)
        with torch.no_grad():
            for conv in (body, tail):
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * 0.1)
            x = _channels_last(torch.rand(2, 8, 12, 12, generator=gen) - 0.3)
            z = _channels_last(torch.rand(2, 3, 12, 12, generator=gen))
            head, head_bias = torch.randn(8, 3, 6, 6, generator=gen) * 0.1, torch.randn(8, generator=gen)
            checks = [  # (got, want, tolerance relative to the largest wanted value)
                (Int8Conv2d.from_conv(body)(x), body(x), 0.05),
                (Int8Conv2d.from_conv(tail, correct_mean=True)(x), tail(x), 0.05),
                (conv_leaky(z, head, head_bias, stride=2, padding=2),
                 nn.functional.leaky_relu(nn.functional.conv2d(z, head, head_bias, stride=2, padding=2),
                                          LEAKY_SLOPE), 1e-5)]
        return all(got.shape == want.shape
                   and float((got - want).abs().max()) < tol * float(want.abs().max())
                   for got, want, tol in checks)
    except (AttributeError, RuntimeError, TypeError, ValueError):
        return False


def conv_leaky(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int,
               padding: int) -> torch.Tensor:
    """``leaky_relu(conv2d(x, weight, bias, stride, padding), LEAKY_SLOPE)`` as one oneDNN
    convolution with an eltwise post-op (float32 or bfloat16, channels-last): no second pass over the
    output."""
    return torch.ops.mkldnn._convolution_pointwise(
        x, weight, bias, [padding] * 2, [stride] * 2, [1, 1], 1, "leaky_relu", [LEAKY_SLOPE], "")


class Int8Conv2d(nn.Module):
    """A 2-D convolution (stride 1) with int8 weights and per-call uint8 activations.

    Parameters
    ----------
    weight : Tensor, (O, C, kh, kw)
        Float weights, quantised per output channel (symmetric, 127 levels).
    bias : Tensor, (O,)
    padding : (int, int)
    correct_mean : bool
        Remove the mean error that rounding the weights adds to each output channel:
        ``sum((w_int8 * scale - w) * mean(x_c))`` over input channels c and taps, with the
        input's channel means measured on every call (one pass over the input; bias
        correction as in Nagel et al., ICCV 2019, with the input's own statistics instead
        of a model's). A convolution whose output feeds the reconstruction directly (the
        4-channel tails) otherwise shifts its mean: by -2.5e-4 to -2.9e-4 of the output
        range in the golden decodes (float tails: at most 4e-5).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, padding: tuple[int, int],
                 correct_mean: bool = False):
        super().__init__()
        w = weight.detach().float()
        scale = w.abs().amax(dim=(1, 2, 3)).clamp(min=1e-12) / 127
        q = torch.round(w / scale[:, None, None, None]).clamp(-127, 127).to(torch.int8)
        self.padding = list(padding)
        self.weight = w  # float32, for the check against float32 and the fallback
        self.w_scale, self.bias = scale, bias.detach().float().clone()
        self.w_zero = torch.zeros(len(scale), dtype=torch.long)
        self.mean_error = ((q.float() * scale[:, None, None, None] - w).sum(dim=(2, 3))
                           if correct_mean else None)  # (O, C)
        self.packed = torch.ops.onednn.qconv_prepack(q, scale, 1.0, 0, [1, 1], self.padding,
                                                     [1, 1], 1, None)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, correct_mean: bool = False) -> Int8Conv2d:
        return cls(conv.weight, conv.bias, conv.padding, correct_mean)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, C, H, W) float32, channels-last -> (N, O, H, W) float32, channels-last.

        The first input of each shape is also convolved in float32 and compared (see the
        module's docstring); where int8 was wrong, the float32 result is returned, now and
        for every later input of that shape.
        """
        key = (tuple(self.weight.shape), tuple(self.padding), tuple(x.shape))
        ok = _CHECKED.get(key)
        if ok is False:
            return self._float(x)
        got = self._int8(x)
        if ok is None:
            want = self._float(x)
            span = float(want.abs().max())
            ok = bool(torch.isfinite(got).all()) and float((got - want).abs().max()) <= INT8_TOLERANCE * span
            if span > 0 and float(x.amax() - x.amin()) > 0:  # a constant input proves nothing
                _CHECKED[key] = ok
            if not ok:
                return want
        return got

    def _float(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(x, self.weight, self.bias, padding=self.padding)

    def _int8(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias
        if self.mean_error is not None:
            channel_mean = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]).mean(0)
            bias = bias - self.mean_error @ channel_mean
        q, scale, zero = quantize_activation(x)
        return torch.ops.onednn.qconv2d_pointwise(
            q, scale, zero, self.packed, self.w_scale, self.w_zero, bias, [1, 1], self.padding,
            [1, 1], 1, 1.0, 0, torch.float32, "none", [], "")


def quantize_activation(x: torch.Tensor) -> tuple[torch.Tensor, float, int]:
    """uint8 codes of a channels-last float tensor over its own [min, max] range (0 included).

    Returns the codes (same shape and layout), the scale and the zero point:
    ``x ~ scale * (codes - zero)``. The codes reinterpret the bytes of a quint8 tensor
    without a copy (``int_repr`` copies at a quarter of the speed): hand them to the
    convolution as they are (slicing them crashed PyTorch 2.13).
    """
    flat = x.permute(0, 2, 3, 1).reshape(-1)  # memory order: a view, no copy
    lo, hi = torch.aminmax(flat)
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = max(hi - lo, 1e-12) / 255
    zero = int(round(-lo / scale))
    with warnings.catch_warnings():  # quint8 tensors are deprecated; only their codes are used
        warnings.simplefilter("ignore", UserWarning)
        codes = torch.quantize_per_tensor(x, scale, zero, torch.quint8).view(torch.uint8)
    return codes, scale, zero


class FastDenoiser(Denoiser):
    """Inference copy of a :class:`~emcs.tcs.nets.unfold.Denoiser` (same parameters).

    The head convolution and its leaky ReLU run as one oneDNN call (:func:`conv_leaky`,
    the stride-2 weight made once); with ``int8`` the body, temporal and tail
    convolutions are :class:`Int8Conv2d` (the tail with its mean correction).
    """

    @classmethod
    def from_denoiser(cls, den: Denoiser, int8: bool = False) -> FastDenoiser:
        fast = cls(den.head.out_channels, len(den.body) + 1)
        fast.load_state_dict(den.state_dict())
        fast.register_buffer("head_weight", _head_weight(fast.head).detach().contiguous(),
                             persistent=False)
        if int8:
            for i, conv in enumerate(fast.body):
                fast.body[i] = Int8Conv2d.from_conv(conv)
            for mix in fast.mix:
                mix.tconv = Int8Conv2d(mix.tconv.weight[..., 0], mix.tconv.bias, (1, 0))
            fast.tail = Int8Conv2d.from_conv(fast.tail, correct_mean=True)
        return fast.eval()

    def features(self, z: torch.Tensor) -> torch.Tensor:
        return conv_leaky(_channels_last(z), self.head_weight, self.head.bias, stride=2, padding=2)


def quantize_unfold(net: UnfoldNet) -> UnfoldNet:
    """A copy of ``net`` (inference only) with int8 body, temporal and tail convolutions in
    every stage but the last, and fused head convolutions (:class:`FastDenoiser`).

    The last stage's errors reach the output unfiltered: quantising it too cost up to
    0.06 dB of PSNR on a smooth held-out movie at 41.6 dB (0.15 dB with the mean correction
    on all its convolutions; benchmarks/tcs_speed.md), while
    the earlier stages' quantisation noise is absorbed by the stages after them (within
    0.02 dB).
    """
    fast = copy.deepcopy(net).eval()
    last = len(fast.denoisers) - 1
    for k, den in enumerate(fast.denoisers):
        fast.denoisers[k] = FastDenoiser.from_denoiser(den, int8=k < last)
    return fast


__all__ = ["INT8_TOLERANCE", "FastDenoiser", "Int8Conv2d", "available", "conv_leaky", "fallbacks",
           "quantize_activation", "quantize_unfold"]

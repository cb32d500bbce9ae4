"""oneDNN Graph fusion of the bfloat16 denoisers (TorchScript graphs, CPU inference only).

PyTorch's eager bfloat16 elementwise kernels are slower per element than its float32 ones
(an ``add_`` of two 10 x 32 x 181^2 tensors: 12 against 6 ms on one core), and in
:class:`~emcs.tcs.nets.bf16.BF16Denoiser` they took more than half of a stage: the
residual adds, the leaky ReLUs and the context term of the temporal mixes. oneDNN Graph
("LLGA"; PyTorch's TorchScript fuser for oneDNN, ``torch.jit.enable_onednn_fusion``)
compiles a convolution together with the elementwise operations after it into one kernel
that keeps the intermediate values in float32 registers; a bfloat16 stage then takes
less than half the time (benchmarks/tcs_speed.md).

:func:`build` traces, for one input shape, four small graphs of a
:class:`~emcs.tcs.nets.bf16.BF16Denoiser`'s parameters (head; the convolutional part of
a temporal mix; body; tail) and returns a callable with the denoiser's signature. The frame
mean and the context 1x1 convolution of a mix stay eager (a matrix product on a small
tensor): a graph that broadcasts the context over the frames ran a reference kernel, ~40x
slower than the eager mix, so the context is expanded to the frames' shape first (one copy).
The fuser flag is set only while a graph is traced and run twice (the profiling executor
compiles it on those runs) and restored after; the compiled graphs keep their fusion.

Tracing costs ~0.6-1.2 s per denoiser and shape on a 2-core Xeon, so callers build a shape
only once it has recurred (:mod:`emcs.tcs.nets.bf16`).

**Opt-in** (``EMCS_FUSE=1`` in the environment): a 4096^2, B = 10 decode takes ~0.8x the wall
time, but its peak memory rises from ~1.9 to 2.2-2.6 GiB, over issue 17's 2 GiB. Not from live
tensors (the graphs hold ~15 MiB): at the peak the heap that
:func:`emcs.nn.device.keep_freed_memory` keeps was more fragmented than with eager tiles, but
what holds the extra memory is not understood (benchmarks/tcs_speed.md lists what was tried).
TorchScript is deprecated in PyTorch; where ``torch.jit`` lacks the fuser this path is simply off.
"""

from __future__ import annotations

import functools
import os
import threading
import warnings

import torch
from torch import nn
from torch.nn import functional as F

from emcs.tcs.nets.unfold import LEAKY_SLOPE

#: one graph is traced at a time (the fuser flag is process-wide)
_LOCK = threading.Lock()


def enabled() -> bool:
    """Whether the fusion is asked for: ``EMCS_FUSE=1`` in the environment (off by default)."""
    return os.environ.get("EMCS_FUSE", "").strip() == "1"


@functools.cache
def available() -> bool:
    """Whether this PyTorch has the oneDNN Graph fuser (TorchScript's LLGA)."""
    return (hasattr(torch.jit, "enable_onednn_fusion") and hasattr(torch._C, "_jit_llga_enabled")
            and torch.backends.mkldnn.is_available())


class _Head(nn.Module):
    def __init__(self, den):
        super().__init__()
        self.w, self.b = den.head_weight.detach(), den.head.bias.detach()

    def forward(self, z):
        return F.leaky_relu(F.conv2d(z.to(torch.bfloat16), self.w, self.b, stride=2, padding=2), LEAKY_SLOPE)


class _MixConv(nn.Module):
    """``leaky(tconv(view) + context) + residual`` on the (n, C, B, H*W) channels-last view.
    The residual is the same tensor as ``view`` but comes in as its own input: a graph that
    reads one input twice crashed oneDNN Graph in PyTorch 2.13."""

    def __init__(self, mix):
        super().__init__()
        self.w, self.b = mix.weight3.detach(), mix.tconv.bias.detach()

    def forward(self, view, context, residual):
        return F.leaky_relu(F.conv2d(view, self.w, self.b, padding=(1, 0)) + context, LEAKY_SLOPE) + residual


class _Body(nn.Module):
    def __init__(self, den):
        super().__init__()
        self.w = [c.weight.detach() for c in den.body]
        self.b = [c.bias.detach() for c in den.body]

    def forward(self, h):
        for w, b in zip(self.w, self.b, strict=True):
            h = h + F.leaky_relu(F.conv2d(h, w, b, padding=1), LEAKY_SLOPE)
        return h


class _Tail(nn.Module):
    def __init__(self, den):
        super().__init__()
        self.w, self.b = den.tail.weight.detach(), den.tail.bias.detach()

    def forward(self, h):
        return F.conv2d(h, self.w, self.b, padding=1).float()


def _trace(module: nn.Module, args: tuple) -> torch.jit.ScriptModule:
    prev = torch._C._jit_llga_enabled()
    torch.jit.enable_onednn_fusion(True)
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated in favour of torch.compile,
            warnings.simplefilter("ignore", DeprecationWarning)  # which needs a C compiler here
            graph = torch.jit.freeze(torch.jit.trace(module.eval(), args, check_trace=False))
        for _ in range(2):  # the profiling executor fuses on these runs
            graph(*args)
    finally:
        torch.jit.enable_onednn_fusion(prev)
    return graph


class FusedDenoiser:
    """A :class:`~emcs.tcs.nets.bf16.BF16Denoiser` for one input shape as fused graphs;
    call it as the denoiser's bfloat16 path: ``fused(z)`` -> float32 residual."""

    def __init__(self, den, z: torch.Tensor, n: int):
        self.n = n
        self.ctx = [(m.ctx.weight[:, :, 0, 0].detach(), m.ctx.bias.detach()) for m in den.mix]
        with _LOCK, torch.no_grad():
            self.head = _trace(_Head(den), (z,))
            h = self.head(z)
            args = self._mix_args(0, h)
            self.mixes = [_trace(_MixConv(den.mix[0]), args)]
            h = self._unview(self.mixes[0](*args), h.shape)
            self.body = _trace(_Body(den), (h,))
            h = self.body(h)
            args = self._mix_args(1, h)
            self.mixes.append(_trace(_MixConv(den.mix[1]), args))
            self.tail = _trace(_Tail(den), (self._unview(self.mixes[1](*args), h.shape),))

    def _mix_args(self, k: int, h: torch.Tensor) -> tuple:
        nb, c, hh, ww = h.shape
        n, b = self.n, nb // self.n
        hm = h.permute(0, 2, 3, 1).reshape(n, b, hh * ww, c)  # memory order (channels-last)
        mean = torch.matmul(torch.full((n, 1, b), 1.0 / b, dtype=h.dtype), hm.reshape(n, b, -1))
        context = F.linear(mean.view(n, hh * ww, c), *self.ctx[k])
        context = context[:, None].expand(n, b, hh * ww, c).contiguous()
        view = hm.permute(0, 3, 1, 2)
        return view, context.permute(0, 3, 1, 2), view

    @staticmethod
    def _unview(out: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        nb, c, hh, ww = shape
        return out.permute(0, 2, 3, 1).reshape(nb, hh, ww, c).permute(0, 3, 1, 2)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        h = self.head(z)
        h = self._unview(self.mixes[0](*self._mix_args(0, h)), h.shape)
        h = self.body(h)
        h = self._unview(self.mixes[1](*self._mix_args(1, h)), h.shape)
        return self.tail(h)


def build(den, z: torch.Tensor, n: int) -> FusedDenoiser | None:
    """Fused graphs of ``den`` (a :class:`~emcs.tcs.nets.bf16.BF16Denoiser`) for inputs shaped
    like ``z`` (float32, (n*B, 3, H, W), channels-last) with ``n`` measurements; None where
    the fuser is unavailable or fails to build them (the caller stays eager)."""
    if not (enabled() and available()):
        return None
    try:
        return FusedDenoiser(den, z, n)
    except (RuntimeError, TypeError, ValueError):
        return None


__all__ = ["FusedDenoiser", "available", "build", "enabled"]

"""``tcs-unfold``: deep-unfolded GAP with small learned spatio-temporal denoisers.

The default neural TCS decoder. Starting from the normalised measurement
Ybar (paper Eq. 2) repeated over the B frames, K stages each do

    x <- x + lambda_k * C * (Y - A x) / R          (GAP data-consistency step)
    x <- x + D_k(x, C, Ybar)                       (learned residual denoiser)

with the real masks C, forward model A and R = sum_b C_b (see
:mod:`emcs.tcs.operator`; deep unfolding of GAP as in Meng, Yuan & Jalali,
Int. J. Comput. Vis. 2023, and Wu, Zhang & Mou, ICCV 2021). D_k works at half
resolution (2x2 pixel-unshuffle) with the B frames folded into the batch for
3x3 convolutions and mixed along time by (3, 1, 1) convolutions plus a
frame-mean context branch. Nothing in the network depends on B, on the mask,
or on the frame size, so one model serves B = 10 .. 30, any seed or explicit
mask, and any H x W.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from emcs.tcs.nets import ARCHITECTURES
from emcs.tcs.operator import adjoint, mask_sum
from emcs.tcs.operator import forward as tcs_forward

ARCHITECTURE = ARCHITECTURES["unfold"]
#: negative slope of every leaky ReLU in the denoisers
LEAKY_SLOPE = 0.1
#: initial ``step`` of a stage added by :meth:`UnfoldNet.grown` (sigmoid(-3) ~ 0.05)
ADDED_STEP = -3.0


def pad_even(y: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad y (n, H, W) and masks (n or 1, B, H, W) to even H, W; expand masks to n.

    Both decoders halve the resolution once; callers crop their output back
    to the original (H, W). The added row / column repeats the last one in y
    *and* in the masks, so it is a consistent measurement (zero masks there
    made ``y / mask_sum`` about B/2 times too bright, which spoiled the last two
    rows and columns of every odd-sized frame or tile).
    """
    n, H, W = y.shape
    ph, pw = H % 2, W % 2
    if ph or pw:
        y = F.pad(y[:, None], (0, pw, 0, ph), mode="replicate")[:, 0]
        masks = F.pad(masks.to(y.dtype), (0, pw, 0, ph), mode="replicate")
    return y, masks.expand(n, -1, -1, -1)


def _inplace() -> bool:
    """Whether activations may be overwritten (no autograd graph is being recorded)."""
    return not torch.is_grad_enabled()


def _add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + b, written into ``a`` when no gradient is recorded."""
    return a.add_(b) if _inplace() else a + b


def _leaky(a: torch.Tensor) -> torch.Tensor:
    """leaky_relu(a, LEAKY_SLOPE), in place when no gradient is recorded."""
    return F.leaky_relu_(a, LEAKY_SLOPE) if _inplace() else F.leaky_relu(a, LEAKY_SLOPE)


def _add_shuffled(x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """x (n, B, H, W) + pixel_shuffle(d, 2) for d (n*B, 4, H/2, W/2); in place, without the
    shuffled copy, when no gradient is recorded."""
    if not _inplace():
        return x + F.pixel_shuffle(d, 2).view(x.shape)
    nb, _, h, w = d.shape
    x.view(nb, h, 2, w, 2).add_(d.view(nb, 2, 2, h, w).permute(0, 3, 1, 4, 2))
    return x


def _set_frames(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The denoiser input z (n*B, H, W, 3) with channel 0 set to x (n*B, H, W); in place
    when no gradient is recorded."""
    if _inplace():
        z[..., 0].copy_(x)
        return z
    return torch.stack([x, z[..., 1], z[..., 2]], -1)


class TemporalMix(nn.Module):
    """Mix features across the B frames: (3,1,1) convolution + frame-mean context.

    Features run channels-last, (n*B, H, W, C) in memory, which is (n, B, H*W, C):
    the (3, 1, 1) convolution is computed as a 2-D (3, 1) convolution of the
    channels-last view (n, C, B, H*W) without a copy (the Conv3d parameters are
    kept and used as they are), and the frame mean and the context 1x1
    convolution act on contiguous (n, B, H*W, C) memory. For inference ``tconv``
    may be replaced by any module mapping that view the same way
    (:mod:`emcs.tcs.nets.int8`).
    """

    def __init__(self, width: int):
        super().__init__()
        self.tconv = nn.Conv3d(width, width, (3, 1, 1), padding=(1, 0, 0))
        self.ctx = nn.Conv2d(width, width, 1)

    def forward(self, h: torch.Tensor, n: int) -> torch.Tensor:
        nb, c, hh, ww = h.shape
        hm = _channels_last(h).permute(0, 2, 3, 1).reshape(n, nb // n, hh * ww, c)  # memory order
        view = hm.permute(0, 3, 1, 2)  # (n, c, b, h*w), channels-last
        if isinstance(self.tconv, nn.Conv3d):
            t = F.conv2d(view, self.tconv.weight[..., 0], self.tconv.bias, padding=(1, 0))
        else:
            t = self.tconv(view)
        t = _channels_last(t).permute(0, 2, 3, 1)  # (n, b, h*w, c)
        m = F.linear(hm.mean(1), self.ctx.weight[:, :, 0, 0], self.ctx.bias)  # (n, h*w, c)
        out = _add(_leaky(_add(t, m[:, None])), hm)
        return out.reshape(nb, hh, ww, c).permute(0, 3, 1, 2)


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def _head_weight(conv: nn.Conv2d) -> torch.Tensor:
    """The weight (O, C, 6, 6) of a stride-2 convolution at full resolution that equals
    ``conv`` (3x3, padding 1, on 4C channels) applied after ``pixel_unshuffle(., 2)``.

    Half-resolution channel ``4c + 2dy + dx`` at offset ``k`` is the full-resolution
    pixel ``2k + dy`` of channel c, i.e. tap ``2k + dy`` of a 6x6 kernel with padding 2.
    """
    o, c4 = conv.weight.shape[:2]
    w = conv.weight.view(o, c4 // 4, 2, 2, 3, 3).permute(0, 1, 4, 2, 5, 3)  # (o, c, ky, dy, kx, dx)
    return w.reshape(o, c4 // 4, 6, 6)


class Denoiser(nn.Module):
    """One stage's residual denoiser at half resolution.

    Input (n*B, 3, H, W), H and W even, best channels-last; output (n*B, 4, H/2, W/2),
    the residual before ``pixel_shuffle(., 2)`` (:func:`_add_shuffled`). The 2x2
    pixel-unshuffle and the head convolution run as one stride-2 convolution
    (:func:`_head_weight`, the same parameters), so the unshuffled input is
    never materialised.
    """

    def __init__(self, width: int, depth: int = 3):
        super().__init__()
        self.head = nn.Conv2d(12, width, 3, padding=1)
        self.body = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(depth - 1))
        self.mix = nn.ModuleList(TemporalMix(width) for _ in range(2))
        self.tail = nn.Conv2d(width, 4, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, z: torch.Tensor, n: int) -> torch.Tensor:
        h = self.features(z)
        h = self.mix[0](h, n)
        for i, conv in enumerate(self.body):
            h = _add(h, _leaky(conv(h)))
            if i == len(self.body) - 1:
                h = self.mix[1](h, n)
        return self.tail(h)  # (n*B, 4, H/2, W/2): the 2x2 pixels of the residual

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """The head: leaky_relu of the stride-2 convolution of z (n*B, 3, H, W), channels-last."""
        return _leaky(F.conv2d(_channels_last(z), _head_weight(self.head), self.head.bias,
                               stride=2, padding=2))


class UnfoldNet(nn.Module):
    """Deep-unfolded GAP decoder.

    Parameters
    ----------
    stages : int
        Number of GAP + denoiser stages K.
    width : int
        Feature channels of each denoiser (at half resolution).
    depth : int
        3x3 convolutions per denoiser.

    Examples
    --------
    >>> net = UnfoldNet(stages=2, width=8)
    >>> y = torch.rand(1, 32, 32); C = (torch.rand(1, 10, 32, 32) > 0.5).float()
    >>> net(y, C).shape
    torch.Size([1, 10, 32, 32])
    """

    def __init__(self, stages: int = 5, width: int = 32, depth: int = 3):
        super().__init__()
        self.config = {"stages": stages, "width": width, "depth": depth}
        self.denoisers = nn.ModuleList(Denoiser(width, depth) for _ in range(stages))
        self.step = nn.Parameter(torch.full((stages,), 2.0))  # sigmoid(2) ~ 0.88

    def grown(self, stages: int) -> UnfoldNet:
        """This network with ``stages`` stages, for a fine-tune with more capacity.

        The first stages are copies of this network's. Each added stage starts as a
        small GAP step (``step`` = :data:`ADDED_STEP`, lambda ~ 0.05) followed by a
        zero residual (the tail convolution is zero), so the grown network starts
        within a small data-consistency step of this one.

        >>> net = UnfoldNet(stages=2, width=8)
        >>> net.grown(3).config["stages"], bool((net.grown(3).denoisers[1].head.weight == net.denoisers[1].head.weight).all())
        (3, True)
        """
        k = self.config["stages"]
        if stages < k:
            raise ValueError(f"a network can only grow: {stages} stages < {k}")
        new = UnfoldNet(**{**self.config, "stages": stages}).to(self.step.device)
        for src, dst in zip(self.denoisers, new.denoisers, strict=False):  # the added stages stay new
            dst.load_state_dict(src.state_dict())
        with torch.no_grad():
            new.step[:k] = self.step
            new.step[k:] = ADDED_STEP
        return new

    def forward(self, y: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Reconstruct (n, B, H, W) from y (n, H, W) and masks (n or 1, B, H, W) (0/1 floats)."""
        n, H, W = y.shape
        y, masks = pad_even(y, masks)
        B = masks.shape[1]
        r = mask_sum(masks)
        ybar = y / r
        x = ybar[:, None].expand(n, B, -1, -1)
        ybar_b = x.reshape(n * B, *x.shape[2:])
        z = torch.stack([ybar_b, masks.reshape(n * B, *x.shape[2:]), ybar_b], -1)  # channels-last
        for k, den in enumerate(self.denoisers):
            lam = torch.sigmoid(self.step[k])
            x = x + lam * adjoint((y - tcs_forward(x, masks)) / r, masks)
            z = _set_frames(z, x.reshape(n * B, *x.shape[2:]))
            x = _add_shuffled(x, den(z.permute(0, 3, 1, 2), n))
        return x[..., :H, :W]

"""``tcs-tcsdl``: the TCS-DL (= BIRNAT) decoder, as a reference point.

Zheng, Wang, Yuan & Xin, "Deep learning for video compressive sensing", Patterns 2021,
after BIRNAT (Cheng et al., ECCV 2020).

Faithful to the paper's Methods and the BIRNAT code structure:

- first-frame CNN on [Ybar, Ybar*C_1 .. Ybar*C_B]: conv 5x5 -> 3x3 -> 1x1 ->
  3x3 stride 2, three residual groups (3 units of 3x3/1x1/3x3 each) interleaved
  with 3x3 and 1x1 convolutions, a SAGAN self-attention block (gamma = 0 at
  init), then transposed conv stride 2 -> 3x3 -> 1x1 -> 3x3 = frame 1;
- forward RNN (B-1 steps) fed by Eq. 3: [Ybar, Y - sum_{t<k} C_t Xf_t -
  sum_{t>k} C_t Ybar] -> features, previous frame -> features, hidden state;
  concatenation -> two residual groups -> new hidden state and next frame;
- backward RNN, same structure with its own weights, starting from the last
  forward frame and the forward hidden state, fed by Eq. 4 (forward estimates
  for frames not yet refined);
- LeakyReLU(0.01), no normalisation; loss 0.5 MSE(forward) + 0.5 MSE(backward).

Changes, all stated in the model card: (1) self-attention is restricted to
non-overlapping windows of ``window`` x ``window`` positions (of the half
resolution map) so memory is linear in the frame area; (2) widths are scaled
by ``cnn_width`` (first-frame CNN) and ``rnn_width`` (RNN cells) for the CPU
training budget; (3) the first layer takes ``b_max + 1`` channels and smaller
B are zero-padded, so one network serves B = 2 .. b_max (the RNN is B-agnostic).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from emcs.tcs.nets import ARCHITECTURES
from emcs.tcs.nets.unfold import pad_even
from emcs.tcs.operator import normalized_measurement

ARCHITECTURE = ARCHITECTURES["tcsdl"]


def _act() -> nn.Module:
    return nn.LeakyReLU(0.01)


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


class ResGroup(nn.Module):
    """BIRNAT ``res_part``: three residual units of conv 3x3 / 1x1 / 3x3."""

    def __init__(self, ch: int):
        super().__init__()
        self.units = nn.ModuleList(
            nn.Sequential(_conv(ch, ch, 3), _act(), _conv(ch, ch, 1), _act(), _conv(ch, ch, 3))
            for _ in range(3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for u in self.units:
            x = x + u(x)
        return x


class WindowAttention(nn.Module):
    """SAGAN self-attention (q, k: C -> C/8, v: C -> C, gamma = 0) within local windows."""

    def __init__(self, ch: int, window: int):
        super().__init__()
        self.window = window
        self.q = nn.Conv2d(ch, max(ch // 8, 1), 1)
        self.k = nn.Conv2d(ch, max(ch // 8, 1), 1)
        self.v = nn.Conv2d(ch, ch, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def _windows(self, t: torch.Tensor) -> torch.Tensor:
        n, c, h, w = t.shape
        s = self.window
        t = t.view(n, c, h // s, s, w // s, s).permute(0, 2, 4, 3, 5, 1)
        return t.reshape(-1, s * s, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        s = self.window
        ph, pw = (-h) % s, (-w) % s
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x
        H, W = xp.shape[2:]
        q, k, v = (self._windows(f(xp)) for f in (self.q, self.k, self.v))
        attn = torch.softmax(q @ k.transpose(1, 2), dim=-1)
        o = (attn @ v).view(n, H // s, W // s, s, s, c).permute(0, 5, 1, 3, 2, 4)
        o = o.reshape(n, c, H, W)[:, :, :h, :w]
        return x + self.gamma * o


class FirstFrameCNN(nn.Module):
    """Encoder-attention-decoder CNN giving the first frame from [Ybar, Ybar*C_b]."""

    def __init__(self, b_max: int, width: float, window: int):
        super().__init__()
        c1, c2, c3 = (max(int(round(c * width)), 4) for c in (32, 64, 128))
        self.enc = nn.Sequential(
            _conv(b_max + 1, c1, 5), _act(), _conv(c1, c2, 3), _act(), _conv(c2, c2, 1), _act(),
            _conv(c2, c3, 3, stride=2), _act(),
        )
        self.mid = nn.Sequential(
            ResGroup(c3), _conv(c3, c3, 3), _act(), ResGroup(c3), _conv(c3, c3, 1), _act(),
            ResGroup(c3), _conv(c3, c3, 3), _act(),
        )
        self.attn = WindowAttention(c3, window)
        self.dec = nn.Sequential(
            nn.ConvTranspose2d(c3, c2, 4, stride=2, padding=1), _act(),
            _conv(c2, c1, 3), _act(), _conv(c1, c1 // 2, 1), _act(), _conv(c1 // 2, 1, 3),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(self.attn(self.mid(self.enc(z))))


class RNNCell(nn.Module):
    """One direction's cell: [Ybar, residual] -> f1, previous frame -> f2, hidden -> next."""

    def __init__(self, width: float):
        super().__init__()
        cm, cf, ch = (max(int(round(c * width)), 2) for c in (10, 20, 20))
        cat = cm + cf + ch
        self.ch = ch
        self.meas = nn.Sequential(_conv(2, cm, 5), _act(), _conv(cm, cm, 1), _act(), _conv(cm, cm, 3))
        self.frame = nn.Sequential(_conv(1, cf, 5), _act(), _conv(cf, cf, 1), _act(), _conv(cf, cf, 3))
        self.res = nn.Sequential(ResGroup(cat), ResGroup(cat))
        self.hidden = nn.Sequential(_conv(cat, ch, 3), _act(), _conv(ch, ch, 1), _act(), _conv(ch, ch, 3))
        self.out = nn.Sequential(_conv(cat, cf, 3), _act(), _conv(cf, cf, 1), _act(), _conv(cf, 1, 3))

    def forward(self, ybar, resid, prev, h):
        z = torch.cat([h, self.meas(torch.cat([ybar, resid], 1)), self.frame(prev)], 1)
        z = self.res(z)
        return self.out(z), self.hidden(z)


class TcsDlNet(nn.Module):
    """TCS-DL / BIRNAT decoder (first-frame CNN + forward and backward RNNs).

    Parameters
    ----------
    b_max : int
        Largest B; the first CNN layer has ``b_max + 1`` input channels.
    cnn_width, rnn_width : float
        Width multipliers relative to the paper (1.0 = 32/64/128 and 10/20/20 channels).
    window : int
        Attention window (positions per side of the half-resolution map).

    Examples
    --------
    >>> net = TcsDlNet(b_max=10, cnn_width=0.125, rnn_width=0.25)
    >>> y = torch.rand(1, 32, 32); C = (torch.rand(1, 10, 32, 32) > 0.5).float()
    >>> net(y, C).shape
    torch.Size([1, 10, 32, 32])
    """

    def __init__(self, b_max: int = 30, cnn_width: float = 0.25, rnn_width: float = 0.5, window: int = 16):
        super().__init__()
        self.config = {"b_max": b_max, "cnn_width": cnn_width, "rnn_width": rnn_width, "window": window}
        self.b_max = b_max
        self.first = FirstFrameCNN(b_max, cnn_width, window)
        self.fwd = RNNCell(rnn_width)
        self.bwd = RNNCell(rnn_width)

    def _both(self, y: torch.Tensor, masks: torch.Tensor):
        n, H, W = y.shape
        y, masks = pad_even(y, masks)
        B = masks.shape[1]
        if B > self.b_max:
            raise ValueError(f"this tcsdl network handles B <= {self.b_max}, got {B}")
        ybar = normalized_measurement(y, masks)[:, None]
        z = torch.cat([ybar, ybar * masks], 1)
        if B < self.b_max:
            z = F.pad(z, (0, 0, 0, 0, 0, self.b_max - B))
        frame = self.first(z)
        h = torch.zeros(n, self.fwd.ch, *y.shape[1:], dtype=y.dtype, device=y.device)
        yy = y[:, None]
        fwd = [frame]
        for k in range(1, B):  # Eq. 3
            d1 = sum(masks[:, t : t + 1] * fwd[t] for t in range(k))
            d2 = (masks[:, k + 1 :] * ybar).sum(1, keepdim=True)
            frame, h = self.fwd(ybar, yy - d1 - d2, frame, h)
            fwd.append(frame)
        bwd = [None] * B
        bwd[B - 1] = fwd[B - 1]
        frame = fwd[B - 1]
        for k in range(B - 2, -1, -1):  # Eq. 4
            d1 = sum(masks[:, t : t + 1] * bwd[t] for t in range(k + 1, B))
            d2 = sum((masks[:, t : t + 1] * fwd[t] for t in range(k)), torch.zeros_like(yy))
            frame, h = self.bwd(ybar, yy - d1 - d2, frame, h)
            bwd[k] = frame
        crop = (Ellipsis, slice(0, H), slice(0, W))
        return torch.cat(fwd, 1)[crop], torch.cat(bwd, 1)[crop]

    def forward(self, y: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Reconstruct (n, B, H, W) (the backward RNN's output) from y (n, H, W) and masks."""
        return self._both(y, masks)[1]

    def loss(self, y: torch.Tensor, masks: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """0.5 MSE(forward frames) + 0.5 MSE(backward frames), as in the paper."""
        f, b = self._both(y, masks)
        return 0.5 * F.mse_loss(f, target) + 0.5 * F.mse_loss(b, target)

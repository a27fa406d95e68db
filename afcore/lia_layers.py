"""Equalised-learning-rate layer primitives of the LIA / StyleGAN2 family (used by afcore.motion_ae).

Equalised learning rate (Karras et al. 2018): weights are stored ~N(0, 1) and multiplied at run time by
1/sqrt(fan_in), so Adam updates every layer at the same relative speed. Every resampling step is
anti-aliased by a per-channel 4x4 FIR, the normalised outer product of [1, 3, 3, 1].

The FIR kernels and the other constants are rebuilt on every call instead of living in buffers: they
cost nothing, they survive `to_empty()` after a meta-device build, and an inference-mode tensor can
never leak into a training graph through a cache.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

FIR_TAPS = (1.0, 3.0, 3.0, 1.0)
LEAKY_SLOPE = 0.2


def fir_kernel(gain: float, like: torch.Tensor) -> torch.Tensor:
    """(4, 4) low-pass kernel summing to `gain` (4 after a 2x zero-insertion, to keep the mean)."""
    taps = torch.tensor(FIR_TAPS, dtype=like.dtype, device=like.device)
    k = torch.outer(taps, taps)
    return k * (gain / k.sum())


def fir_filter(x: torch.Tensor, pad: tuple[int, int], up: int = 1, gain: float = 1.0) -> torch.Tensor:
    """upfirdn2d with down = 1: insert up-1 zeros after every pixel, zero-pad (before, after) on both
    axes, then apply the FIR to each channel separately. (B, C, H, W) -> (B, C, H*up + sum(pad) - 3, ...)."""
    B, C, H, W = x.shape
    if up > 1:
        x = F.pad(x.reshape(B, C, H, 1, W, 1), (0, up - 1, 0, 0, 0, up - 1)).reshape(B, C, H * up, W * up)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    k = fir_kernel(gain, x)  # symmetric, so correlation == convolution and no flip is needed
    return F.conv2d(x, k.expand(C, 1, 4, 4), groups=C)


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """FIR 2x upsampling of the RGB and flow skip paths: (B, C, H, W) -> (B, C, 2H, 2W)."""
    return fir_filter(x, pad=(2, 1), up=2, gain=4.0)


class EqualLinear(nn.Module):
    """Linear layer with equalised lr; no activation (the LIA motion MLP and the style projections)."""

    def __init__(self, d_in: int, d_out: int, bias_init: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(d_out, d_in))
        self.bias = nn.Parameter(torch.full((d_out,), float(bias_init)))
        self.scale = 1 / math.sqrt(d_in)

    def forward(self, x):
        return F.linear(x, self.weight * self.scale, self.bias)


class EqualConv2d(nn.Module):
    """Bias-free conv with equalised lr (every conv of the AE either feeds a FusedLeakyReLU, which holds
    the bias, or has none)."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, k, k))
        self.scale = 1 / math.sqrt(c_in * k * k)
        self.stride, self.padding = stride, padding

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, stride=self.stride, padding=self.padding)


class FusedLeakyReLU(nn.Module):
    """leaky_relu(x + bias, 0.2) * sqrt(2): the gain keeps the activation variance at ~1."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):  # (B, C, H, W)
        return F.leaky_relu(x + self.bias.view(1, -1, 1, 1), LEAKY_SLOPE) * math.sqrt(2)


class ConvLayer(nn.Module):
    """[FIR blur ->] equalised conv [-> FusedLeakyReLU]. `down` halves the size with a blurred stride-2
    conv (blur before striding, so the subsampling does not alias)."""

    def __init__(self, c_in: int, c_out: int, k: int, down: bool = False, act: bool = True):
        super().__init__()
        p = 2 + (k - 1)  # FIR taps minus the factor, plus the conv's own reach
        self.blur_pad = ((p + 1) // 2, p // 2) if down else None
        self.conv = EqualConv2d(c_in, c_out, k, stride=2 if down else 1, padding=0 if down else k // 2)
        self.act = FusedLeakyReLU(c_out) if act else None

    def forward(self, x):
        if self.blur_pad is not None:
            x = fir_filter(x, self.blur_pad)
        x = self.conv(x)
        return self.act(x) if self.act is not None else x


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated conv: the weight is scaled per input channel by a style s = A(w) and, with
    `demodulate`, renormalised per output channel by rsqrt(sum_{in,k,k} weight^2 + 1e-8).

    Scaling the input by s and the output by the demodulation factor is the same linear map as the
    per-sample weight of the official grouped conv, but runs as one ordinary conv over the batch.
    `up` = stride-2 transposed conv followed by the FIR blur (2x upsampling)."""

    def __init__(self, c_in: int, c_out: int, k: int, style_dim: int, demodulate: bool = True,
                 up: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, k, k))
        self.style = EqualLinear(style_dim, c_in, bias_init=1.0)  # starts as the identity modulation
        self.scale = 1 / math.sqrt(c_in * k * k)
        self.demodulate, self.up, self.k = demodulate, up, k

    def forward(self, x, w):  # x (B, C_in, H, W), w (B, style_dim)
        s = self.style(w)  # (B, C_in)
        weight = self.weight * self.scale  # (C_out, C_in, k, k)
        x = x * s[:, :, None, None]
        if self.up:
            x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)  # (B, C_out, 2H+k-2, ...)
            p = 2 - (self.k - 1)  # trims the transposed conv's k-1 extra border pixels back to 2H
            x = fir_filter(x, ((p + 1) // 2 + 1, p // 2 + 1), gain=4.0)
        else:
            x = F.conv2d(x, weight, padding=self.k // 2)
        if self.demodulate:
            demod = torch.rsqrt(s.square() @ weight.square().sum((2, 3)).T + 1e-8)  # (B, C_out)
            x = x * demod[:, :, None, None]
        return x

"""LIA-style motion autoencoder (paper 2.1, App. B.1): the latent of a frame is z = z_S + m, m = Q.lambda.

- encoder: a StyleGAN2-discriminator-like CNN gives the identity (appearance) latent z_S (B, D) and the
  source feature maps at 8, 16, ..., image_size px (coarse -> fine) that the decoder warps;
- motion: five linear layers *without* activations map z_S to lambda (B, K); Q (D, K) is the reduced QR
  basis of a learned matrix, so m = Q.lambda lives in a K-dimensional subspace of the latent space;
- decoder: StyleGAN2 synthesis from a learned 4x4 constant with the same z as the style of every layer.
  At each scale a flow head warps the source features (grid = tanh + identity, mask = sigmoid) and an RGB
  head reads the masked warp. The image has no tanh or clamp, like the official one.

Images are (B, 3, H, W) in [-1, 1]. Official weights (`motion_autoencoder.pth`, keys `enc.*` / `dec.*`
local to the official Generator, optionally prefixed `motion_autoencoder.`) load strictly with
`load_official_motion_ae`; the equalised-lr primitives live in `afcore.lia_layers`.
"""
from __future__ import annotations

import math
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import OFFICIAL_AE_CHANNELS, ModelConfig
from .lia_layers import ConvLayer, EqualConv2d, EqualLinear, FusedLeakyReLU, ModulatedConv2d, upsample2x

MIN_CHANNELS = 8  # floor for narrow (ae_width < 1) variants; never reached at ae_width = 1
OFFICIAL_PREFIX = "motion_autoencoder."


def channel_table(image_size: int, ae_width: float) -> dict[int, int]:
    """Channels per resolution (4 px .. image_size): the official table times ae_width, floored."""
    return {r: max(MIN_CHANNELS, round(c * ae_width)) for r, c in OFFICIAL_AE_CHANNELS.items() if r <= image_size}


def _halvings(image_size: int) -> list[int]:
    """Resolutions a ResBlock halves, fine -> coarse: image_size, ..., 8."""
    return [r for r in sorted(OFFICIAL_AE_CHANNELS, reverse=True) if 8 <= r <= image_size]


class ResBlock(nn.Module):
    """conv3x3 -> blurred stride-2 conv3x3, plus a blurred stride-2 1x1 skip; the sum / sqrt(2) keeps the
    variance. (B, C_in, H, W) -> (B, C_out, H/2, W/2)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = ConvLayer(c_in, c_in, 3)
        self.conv2 = ConvLayer(c_in, c_out, 3, down=True)
        self.skip = ConvLayer(c_in, c_out, 1, down=True, act=False)

    def forward(self, x):
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class AppearanceEncoder(nn.Module):
    """Image -> (z_S (B, D), feature maps coarse -> fine: 8 px, 16 px, ..., image_size px)."""

    def __init__(self, image_size: int, ch: dict[int, int], latent_dim: int):
        super().__init__()
        self.stem = ConvLayer(3, ch[image_size], 1)
        self.blocks = nn.ModuleList(ResBlock(ch[r], ch[r // 2]) for r in _halvings(image_size))
        self.to_latent = EqualConv2d(ch[4], latent_dim, 4)  # 4x4 map -> vector, no bias

    def forward(self, img):  # (B, 3, S, S)
        h = self.stem(img)
        maps = [h]  # fine -> coarse: S, S/2, ..., 4 px
        for block in self.blocks:
            h = block(h)
            maps.append(h)
        z = self.to_latent(h).flatten(1)  # (B, D)
        return z, maps[-2::-1]  # drop the 4-px map, coarse -> fine; the finest map is the stem output


class StyledConv(nn.Module):
    """Modulated 3x3 conv (optionally 2x upsampling) + FusedLeakyReLU. The official layer also holds a
    noise injection, which is a no-op: its decoder never passes a noise tensor."""

    def __init__(self, c_in: int, c_out: int, style_dim: int, up: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(c_in, c_out, 3, style_dim, up=up)
        self.act = FusedLeakyReLU(c_out)

    def forward(self, x, w):
        return self.act(self.conv(x, w))


def identity_grid(size: int, like: torch.Tensor) -> torch.Tensor:
    """(size, size, 2) grid_sample grid from linspace(-1, 1, size); slot 0 is x (along the width).
    With align_corners=False this is a slight zoom, not an exact identity; the official code does the same."""
    lin = torch.linspace(-1, 1, size, dtype=torch.float64)
    gy, gx = torch.meshgrid(lin, lin, indexing="ij")
    return torch.stack([gx, gy], -1).to(like)


class ToFlow(nn.Module):
    """Modulated 1x1 conv (no demodulation) to 3 raw channels: 2 flow + 1 mask, accumulated across scales.
    Warps the source features of this scale and blends them into the decoder features."""

    def __init__(self, c_in: int, style_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(c_in, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(3))

    def forward(self, h, w, feat, prev_raw=None):  # h, feat (B, C, R, R)
        raw = self.conv(h, w) + self.bias.view(1, 3, 1, 1)  # (B, 3, R, R)
        if prev_raw is not None:
            raw = raw + upsample2x(prev_raw)  # the raw (pre-tanh) output of the coarser scale
        grid = torch.tanh(raw[:, :2]).permute(0, 2, 3, 1) + identity_grid(h.shape[-1], h)  # (B, R, R, 2)
        mask = torch.sigmoid(raw[:, 2:3])  # (B, 1, R, R)
        warp = F.grid_sample(feat, grid, mode="bilinear", padding_mode="zeros", align_corners=False) * mask
        return warp, warp + h * (1 - mask), raw, grid


class ToRGB(nn.Module):
    """1x1 conv + FusedLeakyReLU (own bias) + a second bias, plus the 2x-upsampled coarser RGB.
    It reads the *masked warp*, not the blended features."""

    def __init__(self, c_in: int):
        super().__init__()
        self.conv = ConvLayer(c_in, 3, 1)
        self.bias = nn.Parameter(torch.zeros(3))

    def forward(self, warp, prev_rgb=None):
        rgb = self.conv(warp) + self.bias.view(1, 3, 1, 1)
        return rgb if prev_rgb is None else rgb + upsample2x(prev_rgb)


class DecoderScale(nn.Module):
    """One resolution of the decoder: upsampling StyledConv, StyledConv, flow head, RGB head."""

    def __init__(self, c_in: int, c_out: int, style_dim: int):
        super().__init__()
        self.up_conv = StyledConv(c_in, c_out, style_dim, up=True)
        self.conv = StyledConv(c_out, c_out, style_dim)
        self.to_flow = ToFlow(c_out, style_dim)
        self.to_rgb = ToRGB(c_out)


class FlowDecoder(nn.Module):
    """z (B, D) + source feature maps (coarse -> fine) -> image (B, 3, S, S) and the grids, coarse -> fine."""

    def __init__(self, image_size: int, ch: dict[int, int], style_dim: int):
        super().__init__()
        self.const = nn.Parameter(torch.randn(1, ch[4], 4, 4))
        self.conv_4px = StyledConv(ch[4], ch[4], style_dim)
        self.scales = nn.ModuleList(DecoderScale(ch[r // 2], ch[r], style_dim)
                                    for r in reversed(_halvings(image_size)))

    def forward(self, z, feats):
        h = self.conv_4px(self.const.expand(z.shape[0], -1, -1, -1), z)  # (B, C_4, 4, 4)
        raw = rgb = None
        grids = []
        for scale, feat in zip(self.scales, feats):  # the same z is the style of every layer
            h = scale.conv(scale.up_conv(h, z), z)
            warp, h, raw, grid = scale.to_flow(h, z, feat, raw)
            rgb = scale.to_rgb(warp, rgb)
            grids.append(grid)
        return rgb, grids


class MotionAutoencoder(nn.Module):
    """Paper notation: z_S = identity latent, lambda = motion magnitudes, Q = orthonormal directions,
    m = Q.lambda, a frame decodes from z = z_S + m and the reference's feature maps."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        S, D, K = cfg.image_size, cfg.latent_dim, cfg.motion_dirs
        if S not in OFFICIAL_AE_CHANNELS or S < 8:
            raise ValueError(f"image_size must be one of {[r for r in OFFICIAL_AE_CHANNELS if r >= 8]} "
                             f"(a power of two the LIA channel table covers); got {S}")
        if not 0 < K <= D:
            raise ValueError(f"motion_dirs ({K}) must be in 1..latent_dim ({D}) for a QR basis")
        if cfg.ae_width <= 0:
            raise ValueError(f"ae_width must be > 0 (1.0 = official channels); got {cfg.ae_width}")
        self.image_size, self.latent_dim, self.motion_dirs = S, D, K
        ch = channel_table(S, cfg.ae_width)
        self.feature_shapes = [(ch[r], r, r) for r in reversed(_halvings(S))]  # (C, r, r), r = 8 .. S
        self.encoder = AppearanceEncoder(S, ch, D)
        # Five linear layers with no activation: one affine map, kept factored so official weights load.
        self.lambda_head = nn.Sequential(*[EqualLinear(D, D) for _ in range(4)], EqualLinear(D, K))
        self.direction_weight = nn.Parameter(torch.randn(D, K))
        self.decoder = FlowDecoder(S, ch, D)

    # --- encoder side
    def encode_identity(self, img):
        """(B, 3, S, S) -> z_S (B, D), feature maps coarse -> fine [(B, C_r, r, r) for r = 8 .. S]."""
        return self.encoder(self._check_images(img))

    def motion_lambda(self, img):
        """(B, 3, S, S) -> lambda (B, K)."""
        return self.lambda_head(self.encode_identity(img)[0])

    def directions(self):
        """Q (D, K) with orthonormal columns: reduced QR of (weight + 1e-8), LAPACK signs kept as is."""
        return torch.linalg.qr(self.direction_weight + 1e-8, mode="reduced").Q

    def lambda_to_motion(self, lam):
        """lambda (..., K) -> m = Q.lambda (..., D)."""
        return lam @ self.directions().T

    def encode_motion(self, img):
        """m = Q.fc(z_S) (B, D): the motion of a frame with its identity dropped (user / driving motion)."""
        return self.lambda_to_motion(self.motion_lambda(img))

    # --- decoder side
    def decode(self, z, feats, return_flows: bool = False):
        """z (B, D), feats from encode_identity -> image (B, 3, S, S), unclamped.
        With return_flows, also the sampling grids [(B, r, r, 2) for r = 8 .. S], identity included."""
        B = z.shape[0]
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"decode expects z of shape (B, {self.latent_dim}); got {tuple(z.shape)}")
        expected = [(B, *shape) for shape in self.feature_shapes]
        if [tuple(f.shape) for f in feats] != expected:
            raise ValueError(f"decode expects the feature maps of encode_identity, shapes {expected}; "
                             f"got {[tuple(f.shape) for f in feats]}")
        img, grids = self.decoder(z, feats)
        return (img, grids) if return_flows else img

    def reconstruct(self, source, driving):
        """App. B.1 training pair: decode(z_S(source) + m(driving), feats(source)) -> (B, 3, S, S)."""
        if source.shape != driving.shape:
            raise ValueError(f"source {tuple(source.shape)} and driving {tuple(driving.shape)} must match")
        B = source.shape[0]
        z, feats = self.encode_identity(torch.cat([source, driving]))  # one encoder pass for both
        motion = self.lambda_to_motion(self.lambda_head(z[B:]))
        return self.decode(z[:B] + motion, [f[:B] for f in feats])

    forward = reconstruct

    def _check_images(self, img):
        S = self.image_size
        if img.ndim != 4 or img.shape[1] != 3 or img.shape[2:] != (S, S):
            raise ValueError(f"MotionAutoencoder expects images of shape (B, 3, {S}, {S}) in [-1, 1]; "
                             f"got {tuple(img.shape)}. Resize/crop frames to image_size={S}, or build the "
                             f"model with the image_size of your data.")
        return img


# --- official checkpoints -------------------------------------------------------------------------

# Official keys we deliberately do not load, with the reason (the loader reports them).
OFFICIAL_IGNORED = [
    (r"\.noise\.weight$", "noise injection: the official decoder never passes a noise tensor, a no-op"),
    (r"^dec\.to_rgb1\.", "to_rgb1 is built by the official Synthesis but never called in its forward"),
    (r"\.kernel$", "FIR [1,3,3,1] buffer: rebuilt at run time (the official loader never reads buffers)"),
]


def official_key_map(model: MotionAutoencoder) -> dict[str, str]:
    """Official Generator-local key -> our parameter name, for every parameter of `model`."""
    m = {}

    def conv_layer(off, ours, conv_idx, act_idx=None):  # official ConvLayer = Sequential([blur,] conv[, act])
        m[f"{off}.{conv_idx}.weight"] = f"{ours}.conv.weight"
        if act_idx is not None:
            m[f"{off}.{act_idx}.bias"] = f"{ours}.act.bias"

    def styled(off, ours, with_act=True):  # StyledConv / ToFlow
        m[f"{off}.conv.weight"] = f"{ours}.conv.weight"
        m[f"{off}.conv.modulation.weight"] = f"{ours}.conv.style.weight"
        m[f"{off}.conv.modulation.bias"] = f"{ours}.conv.style.bias"
        if with_act:
            m[f"{off}.activate.bias"] = f"{ours}.act.bias"
        else:  # ToFlow: a plain bias after the modulated conv
            m[f"{off}.bias"] = f"{ours}.bias"

    conv_layer("enc.net_app.convs.0", "encoder.stem", 0, 1)
    n_blocks = len(model.encoder.blocks)
    for i in range(n_blocks):
        off, ours = f"enc.net_app.convs.{i + 1}", f"encoder.blocks.{i}"
        conv_layer(f"{off}.conv1", f"{ours}.conv1", 0, 1)
        conv_layer(f"{off}.conv2", f"{ours}.conv2", 1, 2)
        conv_layer(f"{off}.skip", f"{ours}.skip", 1)
    m[f"enc.net_app.convs.{n_blocks + 1}.weight"] = "encoder.to_latent.weight"
    for i in range(len(model.lambda_head)):
        for p in ("weight", "bias"):
            m[f"enc.fc.{i}.{p}"] = f"lambda_head.{i}.{p}"
    m["dec.direction.weight"] = "direction_weight"
    m["dec.input.input"] = "decoder.const"
    styled("dec.conv1", "decoder.conv_4px")
    for i in range(len(model.decoder.scales)):
        ours = f"decoder.scales.{i}"
        styled(f"dec.convs.{2 * i}", f"{ours}.up_conv")
        styled(f"dec.convs.{2 * i + 1}", f"{ours}.conv")
        styled(f"dec.to_flows.{i}", f"{ours}.to_flow", with_act=False)
        conv_layer(f"dec.to_rgbs.{i}.conv", f"{ours}.to_rgb.conv", 0, 1)
        m[f"dec.to_rgbs.{i}.bias"] = f"{ours}.to_rgb.bias"
    assert sorted(m.values()) == sorted(n for n, _ in model.named_parameters()), "key map out of date"
    return m


def map_official_keys(model: MotionAutoencoder, shapes: dict[str, tuple]) -> tuple[dict[str, str], dict[str, str]]:
    """Check official keys (with or without the `motion_autoencoder.` prefix) and their shapes against
    `model`. Returns ({official key: our name}, {ignored official key: reason}); raises listing every
    missing, unexpected or mis-shaped key."""
    local = {k.removeprefix(OFFICIAL_PREFIX): k for k in shapes}
    if len(local) != len(shapes):
        raise ValueError("checkpoint holds the same key both with and without the 'motion_autoencoder.' prefix")
    keymap, ours = official_key_map(model), dict(model.named_parameters())
    mapping, ignored, unexpected, mismatched = {}, {}, [], []
    for k, full in local.items():
        reason = next((why for pat, why in OFFICIAL_IGNORED if re.search(pat, k)), None)
        if k in keymap:
            mapping[full] = keymap[k]
            want = ours[keymap[k]].shape
            if torch.Size(shapes[full]).numel() != want.numel() or \
                    [d for d in shapes[full] if d != 1] != [d for d in want if d != 1]:
                mismatched.append(f"{k}: checkpoint {tuple(shapes[full])} vs model {tuple(want)}")
        elif reason:
            ignored[full] = reason
        else:
            unexpected.append(k)
    missing = sorted(set(keymap) - set(local))
    if missing or unexpected or mismatched:  # ValueError, not KeyError: KeyError's str() escapes the newlines
        raise ValueError(
            "official motion-AE checkpoint does not match this MotionAutoencoder "
            f"(image_size={model.image_size}, latent_dim={model.latent_dim}, motion_dirs={model.motion_dirs}).\n"
            f"  missing ({len(missing)}): {missing}\n  unexpected ({len(unexpected)}): {unexpected}\n"
            f"  shape mismatch ({len(mismatched)}): {mismatched}\n"
            "Official checkpoints need image_size=512, latent_dim=512, motion_dirs=20, ae_width=1.0; a full "
            "AvatarForcing state dict must first be filtered to its 'motion_autoencoder.' keys.")
    return mapping, ignored


def load_official_motion_ae(model: MotionAutoencoder, state_dict: dict[str, torch.Tensor]) -> dict[str, str]:
    """Strictly load an official Generator state dict (e.g. torch.load('motion_autoencoder.pth')).
    Every parameter of `model` is filled; returns the ignored official keys with their reasons.
    A model built on the meta device gets the checkpoint tensors assigned (no double allocation)."""
    mapping, ignored = map_official_keys(model, {k: tuple(v.shape) for k, v in state_dict.items()})
    params = dict(model.named_parameters())
    ours = {name: state_dict[off].reshape(params[name].shape).to(params[name].dtype)  # (1, C, 1, 1) -> (C,) etc.
            for off, name in mapping.items()}
    model.load_state_dict(ours, strict=True, assign=any(p.is_meta for p in params.values()))
    return ignored


def decode_signbits(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Expand the parity fixture's sign-bit encoding: `<name>.signbits` (uint8, packbits MSB-first, set bit
    = +1.0, clear = -1.0) plus `<name>.shape` (int64) -> float32 `<name>`. Other tensors pass through."""
    out = {}
    for name, t in tensors.items():
        if name.endswith(".signbits"):
            base = name.removesuffix(".signbits")
            if base + ".shape" not in tensors:
                raise KeyError(f"{name} has no companion {base}.shape entry")
            shape = tensors[base + ".shape"].tolist()
            bits = (t.to(torch.int64)[:, None] >> torch.arange(7, -1, -1)) & 1  # (bytes, 8), MSB first
            out[base] = (bits.flatten()[:math.prod(shape)].to(torch.float32) * 2 - 1).reshape(shape)
        elif not (name.endswith(".shape") and name.removesuffix(".shape") + ".signbits" in tensors):
            out[name] = t
    return out

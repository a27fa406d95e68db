"""Embedded feature extractors for FID (frames) and FVD (16-frame clips) on the cartoon corpus.

Inception and I3D features mean "what ImageNet / Kinetics networks notice". The embedded stand-ins are
trained to notice what matters for generated talking heads here:
* frame encoder (`train_frame_encoder`): renders of random identities -> regress the 10 face parameters
  AND classify the corruption applied to the frame (none, blur, noise, blockiness, colour cast, ghosting),
  so its features move with content and with visual defects;
* clip encoder (`train_clip_encoder`): 16-frame clips of corpus motion -> regress the clip's mean
  parameters and mean absolute frame-to-frame change, AND classify the temporal corruption (none, frozen,
  shuffled, stuttering, flicker), so its features move with motion statistics and temporal defects.
The feature for the Frechet distance is the 128-d layer before the heads. Values are not comparable with
Inception-FID or I3D-FVD; every result records which extractor made it.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .common import (
    conv_bn,
    fit,
    image_trunk,
    load_extractor,
    make_card,
    save_extractor,
    to_float_images,
    torch_threads,
)
from .quality import FeatureModule
from .renders import corpus_description, corpus_streams, render_bank

FRAME_NAME, CLIP_NAME = "embedded-framefeat-v1", "embedded-clipfeat-v1"
FRAME_CORRUPTIONS = ("none", "blur", "noise", "blocky", "colour", "ghost")
CLIP_CORRUPTIONS = ("none", "frozen", "shuffled", "stutter", "flicker")
CLIP_LEN = 16


def _blur(x, sigma):  # x (N, C, H, W); separable Gaussian with one sigma per sample
    r = 4
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-t[None] ** 2 / (2 * sigma[:, None] ** 2))
    k = k / k.sum(1, keepdim=True)  # (N, 2r+1)
    n, c, h, w = x.shape
    y = x.reshape(1, n * c, h, w)
    kk = k.repeat_interleave(c, 0)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), kk[:, None, None, :], groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), kk[:, None, :, None], groups=n * c)
    return y.reshape(n, c, h, w)


def corrupt_frames(x: torch.Tensor, kinds: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Apply FRAME_CORRUPTIONS[kinds[i]] to image i of x (N, 3, 64, 64) in [0, 1]; random strengths."""
    n = len(x)
    u = torch.rand(n, generator=g)
    out = x.clone()
    m = kinds == 1
    if m.any():
        out[m] = _blur(x[m], 0.7 + 1.3 * u[m])
    m = kinds == 2
    if m.any():
        out[m] = x[m] + (0.03 + 0.08 * u[m])[:, None, None, None] * torch.randn(x[m].shape, generator=g)
    m = kinds == 3
    if m.any():
        out[m] = F.interpolate(F.avg_pool2d(x[m], 4), scale_factor=4, mode="nearest") * 0.7 + 0.3 * x[m]
    m = kinds == 4
    if m.any():
        out[m] = x[m] * (1 + 0.25 * (torch.rand(int(m.sum()), 3, 1, 1, generator=g) * 2 - 1))
    m = kinds == 5
    if m.any():
        other = x[torch.randint(n, (int(m.sum()),), generator=g)]
        out[m] = (1 - 0.4 * u[m, None, None, None]) * x[m] + 0.4 * u[m, None, None, None] * other
    return out.clamp(0, 1)


class FrameEncoder(nn.Module):
    def __init__(self, width: int = 24, dim: int = 128, n_params: int = 10):
        super().__init__()
        self.trunk = nn.Sequential(image_trunk(width), nn.Flatten(), nn.Linear(4 * width * 16, dim), nn.ReLU())
        self.params, self.corruption = nn.Linear(dim, n_params), nn.Linear(dim, len(FRAME_CORRUPTIONS))

    def forward(self, x):  # (N, 3, H, W) in [0, 1] -> (N, dim)
        return self.trunk(to_float_images(x, 64))


class ClipEncoder(nn.Module):
    """(N, 3, T, H, W) in [0, 1] -> (N, dim): a 32 px CNN on each frame and its difference to the previous
    one, then temporal 1-D convs over T."""

    def __init__(self, width: int = 16, dim: int = 128, n_params: int = 10):
        super().__init__()
        w = width
        self.frame = nn.Sequential(conv_bn(6, w, 2), conv_bn(w, 2 * w, 2), conv_bn(2 * w, 4 * w, 2),
                                   nn.AdaptiveAvgPool2d(1), nn.Flatten())  # 32 px -> 4 * w
        # frame features and their frame-to-frame differences: temporal defects live in the differences
        self.time = nn.Sequential(nn.Conv1d(8 * w, dim, 3, 1, 1, bias=False), nn.BatchNorm1d(dim), nn.ReLU(),
                                  nn.Conv1d(dim, dim, 3, 2, 1, bias=False), nn.BatchNorm1d(dim), nn.ReLU(),
                                  nn.AdaptiveAvgPool1d(1), nn.Flatten())
        self.params, self.corruption = nn.Linear(dim, 2 * n_params), nn.Linear(dim, len(CLIP_CORRUPTIONS))

    def forward(self, v):
        n, c, t, h, w = v.shape
        f = F.interpolate(v.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w), size=(32, 32), mode="bilinear",
                          align_corners=False, antialias=True).reshape(n, t, c, 32, 32)
        # pixel differences, amplified: at 25 fps consecutive frames differ by ~1 % of the range, which a
        # frame CNN followed by pooling would average away
        df = 8.0 * torch.diff(f, dim=1, prepend=f[:, :1])
        z = self.frame(torch.cat([f, df], 2).flatten(0, 1)).reshape(n, t, -1).transpose(1, 2)  # (N, 4w, T)
        dz = torch.diff(z, dim=2, prepend=z[:, :, :1])
        return self.time(torch.cat([z, dz], 1))


def corrupt_clips(v: torch.Tensor, kinds: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Apply CLIP_CORRUPTIONS[kinds[i]] to clip i of v (N, 3, T, H, W) in [0, 1]."""
    out = v.clone()
    t = v.shape[2]
    for i, k in enumerate(kinds.tolist()):
        if k == 1:
            out[i] = v[i, :, int(torch.randint(t, (1,), generator=g))][:, None]
        elif k == 2:
            out[i] = v[i][:, torch.randperm(t, generator=g)]
        elif k == 3:
            out[i] = v[i][:, torch.arange(t) // 2 * 2]
        elif k == 4:
            out[i] = (v[i] * (1 + 0.15 * torch.randn(1, t, 1, 1, generator=g))).clamp(0, 1)
    return out


class EmbeddedFeature:
    """A trained encoder + its card; `.feature` is the FeatureModule that quality.fid / quality.fvd take."""

    def __init__(self, model: nn.Module, card: dict, config: dict):
        self.model, self.card, self.config = model.eval(), card, config
        self.feature = FeatureModule(self.model, config["dim"], card)

    def save(self, path):
        return save_extractor(path, self.model, self.card, self.config)

    @classmethod
    def load(cls, path) -> EmbeddedFeature:
        for prefix, build in (("embedded-framefeat", lambda c: FrameEncoder(c["width"], c["dim"])),
                              ("embedded-clipfeat", lambda c: ClipEncoder(c["width"], c["dim"]))):
            try:
                return cls(*load_extractor(path, prefix, build))
            except ValueError as e:
                if "expected one named" not in str(e):
                    raise
        raise ValueError(f"{path} holds neither an {FRAME_NAME} nor an {CLIP_NAME} checkpoint")


def train_frame_encoder(n_identities: int = 32, frames_per_identity: int = 60, steps: int = 150, batch: int = 64,
                        width: int = 24, dim: int = 128, lr: float = 3e-3, seed: int = 0, threads: int | None = 1,
                        max_seconds: float | None = None) -> EmbeddedFeature:
    with torch_threads(threads):
        torch.manual_seed(seed)
        bank = render_bank(n_identities, frames_per_identity, seed=seed + 900)
        x_all, y = torch.from_numpy(bank["frames"]), torch.from_numpy(bank["params"])
        y = (y - y.mean(0)) / y.std(0).clamp_min(1e-3)
        model, g = FrameEncoder(width, dim), torch.Generator().manual_seed(seed)

        def step(_):
            idx = torch.randint(len(x_all), (batch,), generator=g)
            kinds = torch.randint(len(FRAME_CORRUPTIONS), (batch,), generator=g)
            z = model(corrupt_frames(to_float_images(x_all[idx]), kinds, g))
            return F.mse_loss(model.params(z), y[idx]) + F.cross_entropy(model.corruption(z), kinds)

        log = fit(model, step, steps, lr=lr, max_seconds=max_seconds, threads=None)
        card = make_card(FRAME_NAME, "embedded", trained_on={"description": bank["description"]}, training=log,
                         notes="FID features for 64 px renders: params + frame-corruption heads; not Inception")
        return EmbeddedFeature(model, card, {"width": width, "dim": dim})


def train_clip_encoder(corpus, steps: int = 150, batch: int = 16, width: int = 16, dim: int = 128, lr: float = 3e-3,
                       seed: int = 0, threads: int | None = 1, max_seconds: float | None = None) -> EmbeddedFeature:
    with torch_threads(threads):
        torch.manual_seed(seed)
        rng, g = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
        streams = list(corpus_streams(corpus, "train"))
        allp = np.concatenate([s["params"] for s in streams])
        mu, sd = allp.mean(0), allp.std(0) + 1e-3
        vel_sd = np.concatenate([np.abs(np.diff(s["params"], axis=0)) for s in streams]).mean(0) + 1e-3
        model = ClipEncoder(width, dim)

        def step(_):
            clips, targets = [], []
            for _ in range(batch):
                s = streams[rng.integers(len(streams))]
                a = int(rng.integers(len(s["params"]) - CLIP_LEN))
                clips.append(np.asarray(s["frames"][a:a + CLIP_LEN]))
                p = s["params"][a:a + CLIP_LEN]
                targets.append(np.r_[(p.mean(0) - mu) / sd, np.abs(np.diff(p, axis=0)).mean(0) / vel_sd - 1])
            v = torch.from_numpy(np.stack(clips)).permute(0, 4, 1, 2, 3).float() / 255
            kinds = torch.randint(len(CLIP_CORRUPTIONS), (batch,), generator=g)
            z = model(corrupt_clips(v, kinds, g))
            tgt = torch.from_numpy(np.stack(targets)).float()
            clean = kinds == 0  # motion targets only hold for unaltered clips
            reg = F.mse_loss(model.params(z)[clean], tgt[clean]) if clean.any() else z.sum() * 0
            return reg + F.cross_entropy(model.corruption(z), kinds)

        log = fit(model, step, steps, lr=lr, max_seconds=max_seconds, threads=None)
        card = make_card(CLIP_NAME, "embedded", trained_on=dict(corpus_description(corpus), split="train"),
                         training=log, notes="FVD features for 16-frame 64 px clips; not I3D")
        return EmbeddedFeature(model, card, {"width": width, "dim": dim})

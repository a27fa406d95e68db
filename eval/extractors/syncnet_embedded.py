"""The embedded SyncNet: a small audio-visual embedding trained contrastively on the corpus, used by the
same LSE protocol as the public weights (lipsync.lip_sync).

Video side: 5-frame mouth windows (the lower middle of the 64 px face crop, 32 x 40 px). Audio side: the
same 13 x 20 MFCC window (0.2 s) the public SyncNet takes. Training (`train_syncnet`): for a window at
frame v the aligned audio window is the positive; the audio windows of the same clip at offsets
k != 0 in [-15, 15] (exactly what the LSE protocol compares against) and the aligned audio of the other
clips in the batch are negatives; InfoNCE on negative Euclidean distances of unit-length embeddings.
Frames come from the corpus's train split, plus its motion re-rendered on random new faces, so the
model does not learn two people's lips. Distances live in [0, 2], so LSE-D/LSE-C values are on a
different scale than the public SyncNet's: compare numbers only within one extractor (its card says which).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .common import (
    conv_bn,
    fit,
    load_extractor,
    make_card,
    save_extractor,
    to_float_images,
    torch_threads,
)
from .lipsync import MFCC_PER_FRAME, WINDOW, audio_to_mfcc, lip_sync
from .renders import corpus_description, corpus_streams, render_bank

NAME = "embedded-syncnet-v1"
MOUTH_ROWS, MOUTH_COLS = (28, 60), (12, 52)  # in the 64 px frame: lips, jaw and chin under every pose


def mouth_windows(windows) -> torch.Tensor:
    """(B, 5, H, W, 3) uint8 -> (B, 3, 5, 32, 40) float, contrast-normalised per window and colour channel."""
    w = np.asarray(windows)
    b, t = w.shape[:2]
    x = to_float_images(w.reshape(b * t, *w.shape[2:]), 64)[:, :, slice(*MOUTH_ROWS), slice(*MOUTH_COLS)]
    x = x.reshape(b, t, 3, *x.shape[-2:]).permute(0, 2, 1, 3, 4)
    # per-window contrast normalisation: skin tone and lighting say nothing about timing, and removing
    # them is what lets a model trained on a few faces read the mouths of unseen ones
    mu, sd = x.mean((2, 3, 4), keepdim=True), x.std((2, 3, 4), keepdim=True)
    return (x - mu) / (sd + 0.05)


def _cbr1(i, o, stride):
    return [nn.Conv1d(i, o, 3, stride, 1, bias=False), nn.BatchNorm1d(o), nn.ReLU(inplace=True)]


class SyncNetSmall(nn.Module):
    def __init__(self, dim: int = 64, width: int = 32):
        super().__init__()
        w = width
        # the 5 frames stacked as 15 channels: a Conv3d whose kernel spans all 5 frames (SyncNet's first
        # layer) is exactly this Conv2d, and it is several times faster on a CPU
        self.lip_in = conv_bn(3 * WINDOW, w, 2)
        self.lip = nn.Sequential(conv_bn(w, 2 * w, 2), conv_bn(2 * w, 2 * w), conv_bn(2 * w, 4 * w, 2),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, dim))
        self.aud_norm = nn.BatchNorm1d(13)  # MFCC coefficients have very different scales (c0 = log energy)
        self.aud = nn.Sequential(  # the 13 coefficients as channels over 20 steps: cheap 1-D convs
            *_cbr1(13, 2 * w, 1), *_cbr1(2 * w, 4 * w, 2), *_cbr1(4 * w, 4 * w, 2),  # 20 -> 10 -> 5 steps
            nn.Flatten(), nn.Linear(4 * w * 5, dim))

    def forward_lip(self, x):  # (B, 3, 5, 32, 40) -> (B, dim), unit length
        return nn.functional.normalize(self.lip(self.lip_in(x.flatten(1, 2))), dim=-1)

    def forward_aud(self, x):  # (B, 13, 20) -> (B, dim), unit length
        return nn.functional.normalize(self.aud(self.aud_norm(x)), dim=-1)


class EmbeddedSyncNet:
    """The protocol interface (video_windows / audio_windows / card) around SyncNetSmall."""

    def __init__(self, model: SyncNetSmall, card: dict, config: dict):
        self.model, self.card, self.config = model.eval(), card, config

    @torch.no_grad()
    def video_windows(self, windows) -> torch.Tensor:
        return self.model.forward_lip(mouth_windows(windows))

    @torch.no_grad()
    def audio_windows(self, mfcc_windows) -> torch.Tensor:
        return self.model.forward_aud(torch.as_tensor(np.asarray(mfcc_windows), dtype=torch.float32))

    def __call__(self, frames, audio, vshift: int = 15) -> dict:
        return lip_sync(frames, audio, self, vshift)

    def save(self, path):
        return save_extractor(path, self.model, self.card, self.config)

    @classmethod
    def load(cls, path) -> EmbeddedSyncNet:
        return cls(*load_extractor(path, "embedded-syncnet", lambda c: SyncNetSmall(c["dim"], c["width"])))


def _training_streams(corpus, relooks: int, seed: int) -> list[dict]:
    """Train-split streams as (frames uint8, mfcc (13, m), jaw activity), plus re-rendered copies."""
    out = []
    for i, s in enumerate(corpus_streams(corpus, "train")):
        cc = audio_to_mfcc(s["audio"]).astype(np.float32)
        jaw = s["params"][:, 0]
        out.append({"frames": np.asarray(s["frames"]), "mfcc": cc, "jaw": jaw})
        for r in range(relooks):  # same motion and voice, another face
            bank = render_bank(1, len(jaw), seed=seed * 1000 + i * 10 + r, params=s["params"])
            out.append({"frames": bank["frames"], "mfcc": cc, "jaw": jaw})
    return out


def train_syncnet(corpus, steps: int = 300, batch: int = 32, n_offsets: int = 8, vshift: int = 15,
                  dim: int = 64, width: int = 32, lr: float = 3e-3, relooks: int = 2, seed: int = 0,
                  threads: int | None = 1, max_seconds: float | None = None) -> EmbeddedSyncNet:
    """Contrastive training on the corpus's train split (see the module docstring); returns the extractor
    with a card that names the corpus and the offset found on the test split's first clip."""
    with torch_threads(threads):
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        streams = _training_streams(corpus, relooks, seed)
        model = SyncNetSmall(dim, width)
        lo = vshift  # windows whose +-vshift neighbours exist in the stream

        def sample():
            s = streams[rng.integers(len(streams))]
            n = min(len(s["frames"]), (s["mfcc"].shape[1] - 20) // MFCC_PER_FRAME + 1) - WINDOW - vshift
            v = int(rng.integers(lo, n))
            for _ in range(8):  # prefer windows where the mouth moves (silence carries no timing)
                if np.ptp(s["jaw"][v:v + WINDOW]) > 0.05 or rng.random() < 0.2:
                    break
                v = int(rng.integers(lo, n))
            ks = rng.choice(np.r_[-vshift:0, 1:vshift + 1], n_offsets, replace=False)
            shifts = np.r_[0, ks]  # index 0 = positive
            aud = np.stack([s["mfcc"][:, MFCC_PER_FRAME * (v + k):MFCC_PER_FRAME * (v + k) + 20] for k in shifts])
            return s["frames"][v:v + WINDOW], aud

        def step(_):
            items = [sample() for _ in range(batch)]
            lip = model.forward_lip(mouth_windows(np.stack([i[0] for i in items])))  # (B, D)
            aud = model.forward_aud(torch.from_numpy(np.concatenate([i[1] for i in items])))
            aud = aud.reshape(batch, n_offsets + 1, -1)  # (B, 1 + K, D)
            own = torch.linalg.vector_norm(lip[:, None] - aud, dim=-1)  # (B, 1 + K) same clip, shifted
            cross = torch.cdist(lip, aud[:, 0])  # (B, B) other clips' aligned audio
            cross = cross.masked_fill(torch.eye(batch, dtype=torch.bool), float("inf"))
            logits = -10.0 * torch.cat([own, cross], 1)
            return nn.functional.cross_entropy(logits, torch.zeros(batch, dtype=torch.long))

        log = fit(model, step, steps, lr=lr, max_seconds=max_seconds, threads=None)
        config = {"dim": dim, "width": width}
        card = make_card(NAME, "embedded", trained_on=dict(corpus_description(corpus), split="train",
                                                           relooks=relooks), training=log,
                         notes="SyncNet-style embedding of 64 px cartoon mouths; distances in [0, 2]")
        net = EmbeddedSyncNet(model, card, config)
        test = next(corpus_streams(corpus, "test"))
        n = min(len(test["frames"]), 400)
        res = net(np.asarray(test["frames"][:n]), test["audio"][:n * 640], vshift)
        card["quality"] = {"test_offset": res["offset"], "test_lse_d": round(res["lse_d"], 4),
                           "test_lse_c": round(res["lse_c"], 4)}
        return net

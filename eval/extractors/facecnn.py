"""Face parameters from frames, embedded: the analogue of the paper's EMOCA/SPECTRE step for the corpus.

A small CNN regresses the 10 corpus parameters (7 expression + 3 pose, data_prep.schema.PARAM_COLUMNS)
from a rendered frame. It is trained on renders of random identities with independently drawn
parameters (renders.render_bank), optionally plus a corpus's train split, and its accuracy is measured
as R^2 per parameter on identities it never saw. The card carries those numbers, so a metric computed
from its output says "embedded-facecnn-v1 (R^2 ...)".

    fx = train_facecnn(steps=2000)                   # a few minutes on 1 core; tests use 300 steps
    fx.evaluate(held_out["frames"], held_out["params"])  # {"jaw_open": 0.97, ...}
    params = fx(frames)                              # (N, 10) float32, fx.columns
    fx.save("data/extractors/facecnn.pt"); FaceParamExtractor.load(...)
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from data_prep.schema import PARAM_COLUMNS

from .common import (
    fit,
    image_trunk,
    load_extractor,
    make_card,
    r2_per_column,
    save_extractor,
    to_float_images,
    torch_threads,
)
from .renders import corpus_description, corpus_frames, render_bank

NAME = "embedded-facecnn-v1"


class FaceParamCNN(nn.Module):
    """(N, 3, 64, 64) in [0, 1] -> (N, 10) params; targets are standardised inside (buffers mean/std)."""

    def __init__(self, width: int = 32, n_out: int = len(PARAM_COLUMNS)):
        super().__init__()
        self.trunk = image_trunk(width)  # -> (N, 4w, 4, 4)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * width * 16, 256), nn.ReLU(inplace=True),
                                  nn.Linear(256, n_out))
        self.register_buffer("mean", torch.zeros(n_out))
        self.register_buffer("std", torch.ones(n_out))

    def forward_standardised(self, x):
        return self.head(self.trunk(x))

    def forward(self, x):
        return self.forward_standardised(x) * self.std + self.mean


class FaceParamExtractor:
    """Callable: frames (N, H, W, 3) uint8 -> (N, 10) float32 params in `columns` order."""
    columns = PARAM_COLUMNS

    def __init__(self, model: FaceParamCNN, card: dict, config: dict):
        self.model, self.card, self.config = model.eval(), card, config

    @torch.no_grad()
    def __call__(self, frames, batch: int = 256) -> np.ndarray:
        out = [self.model(to_float_images(frames[i:i + batch], 64)) for i in range(0, len(frames), batch)]
        return torch.cat(out).numpy().astype(np.float32) if out else np.zeros((0, len(self.columns)), np.float32)

    def evaluate(self, frames, params) -> dict:
        """R^2 per parameter of the predictions against ground truth (N, 10)."""
        return r2_per_column(self(frames), params, self.columns)

    def save(self, path):
        return save_extractor(path, self.model, self.card, self.config)

    @classmethod
    def load(cls, path) -> FaceParamExtractor:
        return cls(*load_extractor(path, "embedded-facecnn", lambda cfg: FaceParamCNN(cfg["width"])))


def train_facecnn(corpus=None, n_identities: int = 48, frames_per_identity: int = 120, steps: int = 2000,
                  batch: int = 32, lr: float = 5e-3, width: int = 32, seed: int = 0, held_out_identities: int = 8,
                  threads: int | None = 1, max_seconds: float | None = None) -> FaceParamExtractor:
    """Train on random render identities (+ the corpus train split if given); score on unseen identities.

    The card's `quality` holds R^2 per parameter on `held_out_identities` fresh render identities (uniform
    parameter draws) and, with a corpus, on its test split (conversation motion of unseen people).
    """
    with torch_threads(threads):
        return _train(corpus, n_identities, frames_per_identity, steps, batch, lr, width, seed, held_out_identities,
                      max_seconds)


def _train(corpus, n_identities, frames_per_identity, steps, batch, lr, width, seed, held_out_identities, max_seconds):
    torch.manual_seed(seed)
    bank = render_bank(n_identities, frames_per_identity, seed=seed)
    frames, params = bank["frames"], bank["params"]
    trained_on = {"description": bank["description"], "render_seed": seed}
    if corpus is not None:
        c = corpus_frames(corpus, "train", every=2)
        frames, params = np.concatenate([frames, c["frames"]]), np.concatenate([params, c["params"]])
        trained_on.update(corpus_description(corpus), description=bank["description"] + " + " + c["description"])
    model = FaceParamCNN(width)
    y = torch.from_numpy(params)
    model.mean.copy_(y.mean(0))
    model.std.copy_(y.std(0).clamp_min(1e-3))
    x_all = torch.from_numpy(np.ascontiguousarray(frames))  # (N, 64, 64, 3) uint8
    y_std = (y - model.mean) / model.std
    g = torch.Generator().manual_seed(seed)

    def step(_):
        idx = torch.randint(len(x_all), (batch,), generator=g)
        pred = model.forward_standardised(to_float_images(x_all[idx], 64))
        return nn.functional.mse_loss(pred, y_std[idx])

    log = fit(model, step, steps, lr=lr, max_seconds=max_seconds, threads=None)
    config = {"width": width}
    card = make_card(NAME, "embedded", trained_on=trained_on, training=log,
                     notes="regresses data_prep.schema.PARAM_COLUMNS from 64 px renders; cartoon faces only")
    fx = FaceParamExtractor(model, card, config)
    held = render_bank(held_out_identities, 100, seed=seed + 10_000)  # identities no training set contains
    quality = {"r2_heldout_renders": fx.evaluate(held["frames"], held["params"])}
    if corpus is not None:
        test = corpus_frames(corpus, "test", every=2)
        quality["r2_corpus_test"] = fx.evaluate(test["frames"], test["params"])
    quality["r2_mean_heldout_renders"] = float(np.nanmean(list(quality["r2_heldout_renders"].values())))
    card["quality"] = quality
    return fx

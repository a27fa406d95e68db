"""What the training loop reads: the window contract, a deterministic synthetic dataset with it, and the
seeded, resumable batch sampler (its position after s steps is a pure function of (seed, s))."""
from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch.utils.data import Dataset

from .config import ModelConfig


WINDOW_KEYS = ("motion", "avatar_wave", "user_wave", "user_motion", "ref")


class TrainError(RuntimeError):
    """A problem the user fixes (a bad checkpoint, nothing to resume, a mismatched run): no traceback needed."""


class RandomWindows(Dataset):
    """Deterministic synthetic windows with the corpus dict contract and learnable structure: motion is a few
    sinusoidal modes along fixed directions, and each speaker's audio is noise whose loudness follows its
    first mode. Item i depends only on (seed, i)."""

    def __init__(self, cfg: ModelConfig, size: int = 256, seed: int = 0, modes: int = 4):
        self.cfg, self.size, self.seed = cfg, size, seed
        self.frames = cfg.window + cfg.context_frames
        g = torch.Generator().manual_seed(seed)
        self.directions = torch.randn(modes, cfg.latent_dim, generator=g) / math.sqrt(modes)  # (K, D)

    def __len__(self):
        return self.size

    def _speaker(self, g):  # -> motion (T, D), wave (640 T,)
        T, K = self.frames, self.directions.shape[0]
        t = torch.arange(T)[:, None] / self.cfg.fps
        freq, phase = 0.3 + 1.5 * torch.rand(K, generator=g), 2 * math.pi * torch.rand(K, generator=g)
        coeffs = torch.sin(2 * math.pi * freq * t + phase)  # (T, K)
        loudness = (0.5 + 0.5 * coeffs[:, 0]).repeat_interleave(self.cfg.samples_per_frame)  # (640 T,)
        wave = 0.3 * loudness * torch.randn(T * self.cfg.samples_per_frame, generator=g)
        return coeffs @ self.directions, wave

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(i))
        motion, avatar_wave = self._speaker(g)
        user_motion, user_wave = self._speaker(g)
        return {"motion": motion, "avatar_wave": avatar_wave, "user_wave": user_wave, "user_motion": user_motion,
                "ref": motion.mean(0)}


STREAMS = {"data": 0, "objective": 1, "loser": 2}  # independent random streams of one run


def derive_seed(*ints: int) -> int:
    return int(np.random.SeedSequence(list(ints)).generate_state(1, np.uint64)[0])


def step_generator(seed: int, step: int, rank: int, stream: str) -> torch.Generator:
    """A fresh CPU generator per (seed, step, rank, stream): resuming needs no generator state."""
    return torch.Generator().manual_seed(derive_seed(seed, STREAMS[stream], step, rank))


class WindowBatches:
    """Infinite batch sampler: epoch e walks a permutation drawn from (seed, e); batches run across epoch
    ends. The position after s steps is s * batch_size samples, so resuming at step s (or prefetching workers)
    cannot change the order. Rank r of `world` takes items r, r + world, ... of each global batch."""

    def __init__(self, n: int, batch_size: int, seed: int, start_step: int = 0, rank: int = 0, world: int = 1):
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} must divide by the number of processes {world}")
        self.n, self.batch_size, self.seed, self.start_step, self.rank, self.world = \
            n, batch_size, seed, start_step, rank, world

    def permutation(self, epoch: int) -> list[int]:
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(
            derive_seed(self.seed, STREAMS["data"], epoch))).tolist()

    def state(self, step: int) -> dict:
        epoch, cursor = divmod(step * self.batch_size, self.n)
        return {"seed": self.seed, "n": self.n, "batch_size": self.batch_size, "epoch": epoch, "cursor": cursor}

    def __iter__(self):
        perm_of = {}  # the current epoch's permutation (a batch may straddle two epochs)
        for start in itertools.count(self.start_step * self.batch_size, self.batch_size):
            batch = []
            for epoch, i in (divmod(p, self.n) for p in range(start, start + self.batch_size)):
                perm_of = perm_of if epoch in perm_of else {epoch: self.permutation(epoch)}
                batch.append(perm_of[epoch][i])
            yield batch[self.rank::self.world]


def check_window(item: dict, cfg: ModelConfig, source: str):
    T, D, spf = cfg.window + cfg.context_frames, cfg.latent_dim, cfg.samples_per_frame
    want = {"motion": (T, D), "avatar_wave": (spf * T,), "user_wave": (spf * T,), "user_motion": (T, D), "ref": (D,)}
    for key, shape in want.items():
        got = tuple(item[key].shape) if isinstance(item.get(key), torch.Tensor) else item.get(key, "missing")
        if got != shape:
            raise TrainError(f"{source}: item 0 has {key} {got}, config {cfg.name!r} needs a tensor of shape {shape} "
                             f"(window {cfg.window} + context {cfg.context_frames} frames)")

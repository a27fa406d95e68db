"""Streaming sampler (paper Alg. 1/2, official `sample()`): one block of inputs in, that block's motion
latents out, with a rolling KV cache per classifier-free-guidance branch.

Per block whose new frames start at n (token-level look-ahead l = 2, block B = 10, window L = 50):
- the window is the last l clean frames of the previous output (t = 0, the "offset") + B noise frames,
  at absolute positions n - l .. n + B - 1; its conditions are the raw condition frames of those tokens;
- self-attention reads the M = L - B - l cached frames before the window, cross-attention the `cross_band`
  cached condition frames before it;
- Euler over linspace(1000, 0, nfe - 1) with 3-way CFG batched as [uncond | avatar audio | user];
- one clean pass (t = 0) writes the K/V of all window tokens but the last l (they come back as the next
  offset, when they can see the next block) and the cache keeps its last M entries.
The first block is either the official 50-frame window (warmup="window": 2 s before any output) or one
ordinary block with an empty cache (warmup="block": 400 ms).
"""
from __future__ import annotations

import time

import torch

from .dfot import KV, FlowTransformer, Past
from .flow import cfg_combine, denoising_steps, euler_step


def _clock(device: torch.device):
    """perf_counter_ns that first waits for queued GPU work, so each phase is charged its own time."""
    if device.type == "cuda":
        return lambda: (torch.cuda.synchronize(device), time.perf_counter_ns())[1]
    return time.perf_counter_ns


def _cfg_branches(avatar_audio, user_audio, user_motion):
    """Stack the three guidance branches along the batch: [uncond | avatar audio only | user only]."""
    z = torch.zeros_like
    return (torch.cat([z(avatar_audio), avatar_audio, z(avatar_audio)]),
            torch.cat([z(user_audio), z(user_audio), user_audio]),
            torch.cat([z(user_motion), z(user_motion), user_motion]))


class Session:
    def __init__(self, model: FlowTransformer, ref: torch.Tensor, *, nfe: int | None = None,
                 w_audio: float | None = None, w_user: float | None = None, warmup: str = "block",
                 cache: bool = True, generator: torch.Generator | None = None):
        cfg = model.cfg
        if cfg.mask == "bidirectional":
            raise ValueError("a bidirectional generator cannot stream; use afcore.baselines.generate_windowed")
        if warmup not in ("block", "window"):
            raise ValueError(f"warmup must be 'block' or 'window', got {warmup!r}")
        self.model, self.cfg, self.cache = model, cfg, cache
        self.nfe = nfe or cfg.nfe
        self.w_audio = cfg.w_audio if w_audio is None else w_audio
        self.w_user = cfg.w_user if w_user is None else w_user
        self.warmup, self.generator = warmup, generator
        self.ref3 = ref.repeat(3, 1)  # (3B, D)
        self.batch = ref.shape[0]
        self.reset()

    def reset(self):
        self.frames_done = 0
        self.past: Past | None = None
        self.tail_x = None  # (B, o, D) clean offset frames to re-feed
        self.tail_cond = None  # three (B, o, C) condition streams of those frames
        self.cond_hist = None  # three (B, <= cfg.cond_history, C) streams before the window (cond_past models)
        self.history = []  # cache=False: every written window, to recompute the K/V from

    @property
    def next_block_frames(self) -> int:
        return self.cfg.window if (self.frames_done == 0 and self.warmup == "window") else self.cfg.block

    @torch.no_grad()
    def step(self, avatar_audio, user_audio, user_motion, noise: torch.Tensor | None = None):
        """Condition streams (B, n, C) for the next n = `next_block_frames` frames -> motion latents (B, n, D)."""
        cfg, n = self.cfg, self.next_block_frames
        for name, s in (("avatar_audio", avatar_audio), ("user_audio", user_audio), ("user_motion", user_motion)):
            if s.shape[:2] != (self.batch, n) or s.shape[2] != cfg.cond_dim:
                raise ValueError(f"{name}: expected shape ({self.batch}, {n}, {cfg.cond_dim}) for this block, "
                                 f"got {tuple(s.shape)}")
            if not torch.isfinite(s).all():
                raise ValueError(f"{name}: contains NaN or inf")
        if noise is None:
            noise = torch.randn(self.batch, n, cfg.latent_dim, generator=self.generator,
                                device=self.ref3.device)
        streams = (avatar_audio, user_audio, user_motion)
        if self.tail_x is not None:  # re-feed the offset frames in front of the new block
            streams = tuple(torch.cat([t, s], 1) for t, s in zip(self.tail_cond, streams))
            x = torch.cat([self.tail_x, noise], 1)
        else:
            x = noise
        o = x.shape[1] - n
        pos = torch.arange(self.frames_done - o, self.frames_done + n, device=x.device)
        clock = _clock(x.device)
        t0 = clock()
        if self.cond_hist is not None:  # history frames only feed the band; their outputs are dropped
            streams = tuple(torch.cat([h, s], 1) for h, s in zip(self.cond_hist, streams))
        cond3 = self._encode(streams, x.shape[1])  # (3B, L, H)
        past = self.past if self.cache else self._recompute_past()
        t1 = clock()
        x = self._denoise(x, o, cond3, pos, past)
        t2 = clock()
        self._write(x, streams, cond3, pos, past)
        t3 = clock()
        # Wall-clock split of this block (ms).
        self.last_timing = {"condition_ms": (t1 - t0) / 1e6, "denoise_ms": (t2 - t1) / 1e6,
                            "cache_write_ms": (t3 - t2) / 1e6}
        self.frames_done += n
        return x[:, o:]

    def _denoise(self, x, o, cond3, pos, past):
        steps = denoising_steps(self.nfe)
        B, L, _ = x.shape
        for t_cur, t_next in zip(steps[:-1], steps[1:]):
            t_tok = torch.full((B, L), float(t_cur), device=x.device)
            t_tok[:, :o] = 0
            t_nxt = torch.full((B, L), float(t_next), device=x.device)
            t_nxt[:, :o] = 0
            v3 = self.model(x.repeat(3, 1, 1), t_tok.repeat(3, 1), cond3, self.ref3, pos, past)
            x = euler_step(x, cfg_combine(*v3.chunk(3), self.w_audio, self.w_user), t_tok, t_nxt)
        return x

    def _encode(self, streams, frames: int) -> torch.Tensor:
        """Condition streams (history + window) -> condition tokens of the window's last `frames` frames."""
        return self.model.encode_conditions(*_cfg_branches(*streams))[:, -frames:]

    def _write(self, x, streams, cond3, pos, past):
        """The clean pass: K/V of every window token except the last `offset` enter the cache."""
        cfg = self.cfg
        keep = x.shape[1] - cfg.offset
        if cfg.cond_history:  # streams = history + window; the next window starts at this one's tail
            self.cond_hist = tuple(s[:, :s.shape[1] - cfg.offset][:, -cfg.cond_history:] for s in streams)
        if self.cache:
            _, kv = self.model(x.repeat(3, 1, 1), torch.zeros(3 * x.shape[0], x.shape[1], device=x.device), cond3, self.ref3,
                               pos, past, return_kv=True)
            self.past = _append(past, kv, pos, keep, cfg.cache_len, cfg.cross_band)
        else:
            self.history.append((x, streams, pos))
        self.tail_x = x[:, keep:] if cfg.offset else None
        self.tail_cond = tuple(s[:, s.shape[1] - cfg.offset:] for s in streams) if cfg.offset else None

    def _recompute_past(self) -> Past | None:
        """No KV cache: rebuild every cached key/value by re-running all earlier clean passes."""
        past = None
        for x, streams, pos in self.history:
            cond3 = self._encode(streams, x.shape[1])
            _, kv = self.model(x.repeat(3, 1, 1), torch.zeros(3 * x.shape[0], x.shape[1], device=x.device), cond3, self.ref3,
                               pos, past, return_kv=True)
            past = _append(past, kv, pos, x.shape[1] - self.cfg.offset, self.cfg.cache_len, self.cfg.cross_band)
        return past


def _append(past: Past | None, kv: list[KV], pos, keep: int, self_len: int, cross_len: int) -> Past:
    """Add the first `keep` window tokens to the cache and keep its newest entries (constant memory)."""
    layers = []
    for i, new in enumerate(kv):
        old = past.layers[i] if past is not None else KV(*(t[:, :, :0] for t in new))
        layers.append(KV(torch.cat([old.self_k, new.self_k[:, :, :keep]], 2)[:, :, -self_len:],
                         torch.cat([old.self_v, new.self_v[:, :, :keep]], 2)[:, :, -self_len:],
                         torch.cat([old.cross_k, new.cross_k[:, :, :keep]], 2)[:, :, -cross_len:],
                         torch.cat([old.cross_v, new.cross_v[:, :, :keep]], 2)[:, :, -cross_len:]))
    old_self = past.self_pos if past is not None else pos[:0]
    old_cross = past.cross_pos if past is not None else pos[:0]
    return Past(layers, torch.cat([old_self, pos[:keep]])[-self_len:], torch.cat([old_cross, pos[:keep]])[-cross_len:])


def _pad_to(x: torch.Tensor, frames: int) -> torch.Tensor:
    """Replicate-pad the time axis of (B, T, C) up to `frames` (the official end-of-stream behaviour)."""
    if x.shape[1] >= frames:
        return x[:, :frames]
    return torch.cat([x, x[:, -1:].expand(-1, frames - x.shape[1], -1)], 1)


@torch.no_grad()
def generate(model: FlowTransformer, ref, avatar_audio, user_audio, user_motion, *, noise=None,
             generator=None, **session_kw) -> torch.Tensor:
    """Offline convenience: stream whole clips (B, T, C) through a Session -> (B, T, D). Inputs are
    replicate-padded to whole blocks and the output cropped to T. `noise`: optional list of per-block noise."""
    session = Session(model, ref, generator=generator, **session_kw)
    T = avatar_audio.shape[1]
    out, start, i = [], 0, 0
    while start < T:
        n = session.next_block_frames
        chunk = [_pad_to(s[:, start:], n) for s in (avatar_audio, user_audio, user_motion)]
        out.append(session.step(*chunk, noise=None if noise is None else noise[i]))
        start, i = start + n, i + 1
    return torch.cat(out, 1)[:, :T]

"""Condition encoders: per-frame condition streams -> condition tokens (B, L, hidden) for cross-attention.

- DualMotionEncoder (paper 2.3, Fig. 3a): user motion queries user audio, then avatar audio queries the
  fused user stream. Like the official code it has no mask and no positions inside the current window.
- MotionGuider (INFP*, paper App. D.3): audio only; avatar audio reads a verbal memory bank and user
  audio a non-verbal one (K = 64 entries each).
- AvatarOnly: the talking-only model (FLOAT-like row, DPO loser generator): avatar audio alone.

Null conditions for guidance are zeros in the condition space, before the encoder (official), so the null
token sequence is not zero.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig


class DualMotionEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.cond_dim
        self.motion_mlp = nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d), nn.SiLU(),
                                        nn.Linear(d, d), nn.LayerNorm(d), nn.SiLU())
        self.user_attn = nn.MultiheadAttention(d, cfg.cond_heads, batch_first=True)
        self.user_norm = nn.LayerNorm(d)
        self.avatar_attn = nn.MultiheadAttention(d, cfg.cond_heads, batch_first=True)
        self.avatar_norm = nn.LayerNorm(d)
        self.to_hidden = nn.Linear(d, cfg.hidden)
        self.band = None if cfg.cond_band is None else (cfg.cond_band if cfg.cond_past is None else cfg.cond_past,
                                                         cfg.cond_band)  # (past, future) frames

    def forward(self, avatar_audio, user_audio, user_motion):  # each (B, L, C)
        L = user_motion.shape[1]
        blocked = None
        if self.band is not None:  # True = may not attend (nn.MultiheadAttention's convention)
            i = torch.arange(L, device=user_motion.device)
            ahead = i[None, :] - i[:, None]  # key frame - query frame
            blocked = (ahead > self.band[1]) | (ahead < -self.band[0])  # (L, L)
        m = self.motion_mlp(user_motion)
        u = F.silu(self.user_norm(m + self.user_attn(m, user_audio, user_audio, attn_mask=blocked, need_weights=False)[0]))
        c = F.silu(self.avatar_norm(avatar_audio + self.avatar_attn(avatar_audio, u, u, attn_mask=blocked,
                                                                    need_weights=False)[0]))
        return self.to_hidden(c)  # (B, L, H)


class MotionGuider(nn.Module):
    """INFP*'s interactive motion guider: retrieve motion guidance from learned memory banks with the
    audio of each party. It never sees user motion (INFP uses dual-track audio only)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.cond_dim
        self.verbal_bank = nn.Parameter(torch.randn(cfg.guider_bank, d) * d ** -0.5)
        self.nonverbal_bank = nn.Parameter(torch.randn(cfg.guider_bank, d) * d ** -0.5)
        self.verbal_attn = nn.MultiheadAttention(d, cfg.cond_heads, batch_first=True)
        self.nonverbal_attn = nn.MultiheadAttention(d, cfg.cond_heads, batch_first=True)
        self.norm = nn.LayerNorm(2 * d)
        self.to_hidden = nn.Linear(2 * d, cfg.hidden)

    def forward(self, avatar_audio, user_audio, user_motion=None):  # user_motion is ignored by design
        B = avatar_audio.shape[0]
        verbal_bank = self.verbal_bank.expand(B, -1, -1)  # (B, K, C)
        nonverbal_bank = self.nonverbal_bank.expand(B, -1, -1)
        verbal = self.verbal_attn(avatar_audio, verbal_bank, verbal_bank, need_weights=False)[0]
        nonverbal = self.nonverbal_attn(user_audio, nonverbal_bank, nonverbal_bank, need_weights=False)[0]
        return self.to_hidden(F.silu(self.norm(torch.cat([verbal, nonverbal], -1))))  # (B, L, H)


class AvatarOnly(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.cond_dim
        self.mlp = nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d), nn.SiLU(), nn.Linear(d, cfg.hidden))

    def forward(self, avatar_audio, user_audio=None, user_motion=None):
        return self.mlp(avatar_audio)  # (B, L, H)


CONDITIONER_CLASSES = {"dual": DualMotionEncoder, "guider": MotionGuider, "avatar_only": AvatarOnly}


def build_conditioner(cfg: ModelConfig) -> nn.Module:
    return CONDITIONER_CLASSES[cfg.conditioner](cfg)

"""Causal DFoT motion generator (paper 2.4, official FlowTransformer).

One token per video frame. Input token = Linear([x_t ; m_S]) (noisy motion latent and reference motion).
Per-frame flow times drive ONE shared adaLN-Zero modulation (PixArt-style) used by every block; each
block is RoPE self-attention (masked), un-gated cross-attention to the condition tokens inside a +-band,
and an MLP. Every position is absolute, so the same code serves a training window, a streaming block
reading a KV cache, and a 10-minute session (RoPE angles are computed for the positions at hand: no
table to run out).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .conditioning import build_conditioner
from .config import ModelConfig

# ------------------------------------------------------------------------------------------------
# Masks (True = may attend), on absolute frame positions
# ------------------------------------------------------------------------------------------------


def attention_mask(kind: str, q_pos: torch.Tensor, k_pos: torch.Tensor, block: int, lookahead: int) -> torch.Tensor:
    """Self-attention mask (Lq, Lk) for every variant the ablations need.

    framewise        k <= q
    blockwise        block(k) <= block(q)
    lookahead        k <= q + l. The official code's (block(k) < block(q)) | (k <= q + l), whose block
                     term is implied by the token term: token-causal with an l-frame look-ahead. Default,
                     because the released weights were trained and are sampled with it.
    block_lookahead  k <= end(block(q)) + l: every frame of a block sees its whole block and the first l
                     frames of the next (the paper's figure). The printed Eq. 5, block(k) <= block(q) + l,
                     would see l whole future blocks; we read it as this, the figure's meaning.
    bidirectional    everything (INFP*-style windows).
    """
    q, k = q_pos[:, None], k_pos[None, :]
    if kind == "framewise":
        return k <= q
    if kind == "blockwise":
        return torch.div(k, block, rounding_mode="floor") <= torch.div(q, block, rounding_mode="floor")
    if kind == "lookahead":
        return k <= q + lookahead
    if kind == "block_lookahead":
        block_end = (torch.div(q, block, rounding_mode="floor") + 1) * block - 1
        return k <= block_end + lookahead
    if kind == "bidirectional":
        return torch.ones(q.shape[0], k.shape[1], dtype=torch.bool, device=q.device)
    raise ValueError(f"unknown mask kind {kind!r}")


def band_mask(q_pos: torch.Tensor, k_pos: torch.Tensor, band: int) -> torch.Tensor:
    """Cross-attention alignment: frame q reads condition frames q - band .. q + band."""
    return (q_pos[:, None] - k_pos[None, :]).abs() <= band


# ------------------------------------------------------------------------------------------------
# RoPE on interleaved pairs (2i, 2i+1), angle = pos * 10000^(-2i / head_dim)
# ------------------------------------------------------------------------------------------------


def rope_cos_sin(pos: torch.Tensor, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    # float64 angles keep a 10-minute session (15,000 positions) as exact as position 0.
    inv_freq = 10000.0 ** (-torch.arange(0, head_dim, 2, dtype=torch.float64, device=pos.device) / head_dim)
    angle = pos.to(torch.float64)[:, None] * inv_freq[None, :]  # (L, hd/2)
    return angle.cos().float(), angle.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x_even, x_odd = x[..., 0::2], x[..., 1::2]  # (B, h, L, hd/2)
    return torch.stack([x_even * cos - x_odd * sin, x_even * sin + x_odd * cos], dim=-1).flatten(-2)


# ------------------------------------------------------------------------------------------------
# Layers
# ------------------------------------------------------------------------------------------------


def timestep_sinusoid(t: torch.Tensor, dim: int = 256) -> torch.Tensor:
    """Raw t (0..1000, not t/1000); cos half first, then sin."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimeEmbedding(nn.Module):
    def __init__(self, hidden: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.fc1, self.fc2 = nn.Linear(freq_dim, hidden), nn.Linear(hidden, hidden)

    def forward(self, t):  # (B, L) -> (B, L, H)
        return self.fc2(F.silu(self.fc1(timestep_sinusoid(t, self.freq_dim))))


class KV(NamedTuple):
    """Keys/values one layer contributes for a run of frames. Self keys are stored after RoPE."""
    self_k: torch.Tensor  # (B, h, M, hd)
    self_v: torch.Tensor
    cross_k: torch.Tensor  # (B, h, Mc, hd)
    cross_v: torch.Tensor


class SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv, self.out = nn.Linear(hidden, 3 * hidden), nn.Linear(hidden, hidden)

    def forward(self, x, rope, mask, past_k=None, past_v=None):
        B, L, H = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, H // self.heads).permute(2, 0, 3, 1, 4)  # (B, h, L, hd)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        k_all = k if past_k is None else torch.cat([past_k, k], dim=2)
        v_all = v if past_v is None else torch.cat([past_v, v], dim=2)
        y = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(B, L, H)), k, v


class CrossAttention(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.kv, self.out = nn.Linear(hidden, hidden), nn.Linear(hidden, 2 * hidden), nn.Linear(hidden, hidden)

    def forward(self, x, cond, mask, past_k=None, past_v=None):
        B, L, H = x.shape
        q = self.q(x).view(B, L, self.heads, -1).transpose(1, 2)
        k, v = self.kv(cond).view(B, cond.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        k_all = k if past_k is None else torch.cat([past_k, k], dim=2)
        v_all = v if past_v is None else torch.cat([past_v, v], dim=2)
        y = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(B, L, H)), k, v


class MLP(nn.Module):
    def __init__(self, hidden: int, ratio: float):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(hidden, int(hidden * ratio)), nn.Linear(int(hidden * ratio), hidden)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


def layer_norm(x):
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)  # non-affine everywhere in the generator


class DFoTBlock(nn.Module):
    """No parameters of its own for adaLN: the modulation is shared by all blocks."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.self_attn = SelfAttention(cfg.hidden, cfg.heads)
        self.cross_attn = CrossAttention(cfg.hidden, cfg.heads)
        self.mlp = MLP(cfg.hidden, cfg.mlp_ratio)

    def forward(self, x, mod, cond, rope, self_mask, cross_mask, past: KV | None = None):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod
        p = past or KV(None, None, None, None)
        h, k, v = self.self_attn(modulate(layer_norm(x), shift_msa, scale_msa), rope, self_mask, p.self_k, p.self_v)
        x = x + gate_msa * h
        h, ck, cv = self.cross_attn(layer_norm(x), cond, cross_mask, p.cross_k, p.cross_v)
        x = x + h
        x = x + gate_mlp * self.mlp(modulate(layer_norm(x), shift_mlp, scale_mlp))
        return x, KV(k, v, ck, cv)


# ------------------------------------------------------------------------------------------------
# The generator
# ------------------------------------------------------------------------------------------------


class Past(NamedTuple):
    """What a forward may read instead of recomputing: per-layer K/V and the frame positions they hold."""
    layers: list[KV]
    self_pos: torch.Tensor  # (M,)
    cross_pos: torch.Tensor  # (Mc,)


class FlowTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        H, D = cfg.hidden, cfg.latent_dim
        self.input_proj = nn.Linear(2 * D, H)
        self.time_embed = TimeEmbedding(H)
        self.cond_encoder = build_conditioner(cfg)
        self.shared_adaln = nn.Linear(H, 6 * H)
        self.blocks = nn.ModuleList(DFoTBlock(cfg) for _ in range(cfg.depth))
        self.final_adaln = nn.Linear(H, 2 * H)
        self.out_proj = nn.Linear(H, D)
        self.reset_parameters()

    def reset_parameters(self):
        """DiT-style: xavier Linear, N(0, 0.02) time MLP, zero adaLN and output, so the model starts at v = 0
        and every gated branch as identity (cross-attention is un-gated, so it is live from step 0)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for lin in (self.time_embed.fc1, self.time_embed.fc2):
            nn.init.normal_(lin.weight, std=0.02)
        for lin in (self.shared_adaln, self.final_adaln, self.out_proj):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def encode_conditions(self, avatar_audio, user_audio, user_motion):  # each (B, L, C) -> (B, L, H)
        return self.cond_encoder(avatar_audio, user_audio, user_motion)

    def forward(self, x, t, cond, ref, pos=None, past: Past | None = None, return_kv: bool = False):
        """x (B, L, D) noisy latents; t (B, L) raw flow times (0 clean, 1000 noise); cond (B, L, H) condition
        tokens of the same frames; ref (B, D) reference motion m_S; pos (L,) absolute frame positions
        (default 0..L-1); past: cached K/V of earlier frames. Returns v (B, L, D) [and this call's KV]."""
        cfg = self.cfg
        B, L, _ = x.shape
        pos = torch.arange(L, device=x.device) if pos is None else pos
        h = self.input_proj(torch.cat([x, ref[:, None, :].expand(B, L, -1)], dim=-1))  # (B, L, H)
        temb = F.silu(self.time_embed(t))  # (B, L, H)
        mod = self.shared_adaln(temb).chunk(6, dim=-1)
        self_keys = pos if past is None else torch.cat([past.self_pos, pos])
        cross_keys = pos if past is None else torch.cat([past.cross_pos, pos])
        self_mask = attention_mask(cfg.mask, pos, self_keys, cfg.block, cfg.lookahead)
        cross_mask = band_mask(pos, cross_keys, cfg.cross_band)
        rope = rope_cos_sin(pos, cfg.head_dim)
        new_kv = []
        for i, block in enumerate(self.blocks):
            h, kv = block(h, mod, cond, rope, self_mask, cross_mask, None if past is None else past.layers[i])
            new_kv.append(kv)
        shift, scale = self.final_adaln(temb).chunk(2, dim=-1)
        v = self.out_proj(modulate(layer_norm(h), shift, scale))  # (B, L, D)
        return (v, new_kv) if return_kv else v
